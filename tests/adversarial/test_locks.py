"""The writer lock under attack: races between many processes, aliases of one store, lock
files that are garbage, empty or deleted mid-run."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mxd_cli.errors import LockError
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.lock import UNREADABLE_GRACE, WriterLock
from tests.cli.test_definitions import mxd
from tests.engine import materialize_project as mp

REPO = Path(__file__).resolve().parents[2]

CONTENDER = """
import json, os, sys, time
from pathlib import Path
from mxd_cli.store.lock import WriterLock
path, log, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
with WriterLock(path, wait=60) as lock:
    entered = time.time()
    time.sleep(0.05)
    left = time.time()
    with open(log, "a") as fh:
        fh.write(json.dumps([os.getpid(), entered, left, lock.took_over is not None]) + "\\n")
"""


def _contend(path: Path, log: Path, processes: int) -> list[list[float]]:
    start = time.time() + 1.0  # every process is ready before the race starts
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(path), str(log), str(start)], env=env
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("round_", range(2))
def test_many_processes_racing_for_a_dead_writers_lock_never_overlap(
    tmp_path: Path, round_: int
) -> None:
    path = tmp_path / "s.duckdb.mxd-lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_out())
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    held = sorted(_contend(path, tmp_path / "log", 8), key=lambda r: r[1])
    assert len(held) == 8
    for before, after in itertools.pairwise(held):
        assert before[2] <= after[1], "two writers held the lock at once"
    assert sum(1 for r in held if r[3]) == 1  # exactly one took the dead writer's lock over


@pytest.mark.slow
def test_many_rounds_of_races(tmp_path: Path) -> None:
    for n in range(10):
        log, path = tmp_path / f"log{n}", tmp_path / f"lock{n}"
        held = sorted(_contend(path, log, 8), key=lambda r: r[1])
        for before, after in itertools.pairwise(held):
            assert before[2] <= after[1]


def test_aliases_of_one_store_share_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    direct = DuckDBStore("a", {"database": str(real / "s.duckdb")})
    through_link = DuckDBStore("b", {"database": str(tmp_path / "alias" / "x" / ".." / "s.duckdb")})
    assert direct.lock_path() == through_link.lock_path()
    (real / "file.duckdb").touch()
    (tmp_path / "link.duckdb").symlink_to(real / "file.duckdb")
    linked = DuckDBStore("c", {"database": str(tmp_path / "link.duckdb")})
    assert linked.lock_path() == real / "file.duckdb.mxd-lock"


def test_a_second_writer_through_a_symlinked_path_is_refused(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    config = (root / "metaxy.toml").read_text()
    (tmp_path / "alias").symlink_to(root / ".mxd", target_is_directory=False)
    (root / ".mxd").mkdir(exist_ok=True)
    (root / "alias.toml").write_text(
        config.replace('database = ".mxd/dev.duckdb"', f'database = "{tmp_path}/alias/dev.duckdb"')
    )
    with WriterLock(
        Path(os.path.realpath(root / ".mxd" / "dev.duckdb")).with_suffix(".duckdb.mxd-lock")
    ):
        result = mxd("-c", "alias.toml", "materialize", cwd=root)
    assert result.exit_code == 1, result.output
    assert "locked by another writer" in result.stderr


def test_an_empty_lock_file_does_not_lock_the_store(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("")
    with WriterLock(path) as lock:
        assert lock.took_over is None


def test_a_garbage_lock_file_is_taken_over_once_it_is_old(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("\x00garbage{")
    old = time.time() - UNREADABLE_GRACE - 1
    os.utime(path, (old, old))
    with WriterLock(path) as lock:
        assert lock.took_over == {"unreadable": True}
    assert not path.exists()


def test_a_fresh_garbage_lock_file_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("garbage")
    with pytest.raises(LockError, match="cannot be read"):
        WriterLock(path, wait=0).acquire()


def test_garbage_lock_file_is_reported_by_the_cli_then_taken_over(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    path = root / ".mxd" / "dev.duckdb.mxd-lock"
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    old = time.time() - UNREADABLE_GRACE - 1
    os.utime(path, (old, old))
    result = mxd("materialize", cwd=root)
    assert result.exit_code == 0, result.output
    assert f"the lock file {path} could not be read" in result.stderr


def test_a_writer_whose_lock_file_is_deleted_stops_before_its_next_commit(
    tmp_path: Path,
) -> None:
    root = mp.make(tmp_path / "p")
    mp.behave(root, sleep=0.4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mxd_cli", "--json", "materialize"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(mp.calls(root, "demo/clean")) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (root / ".mxd" / "dev.duckdb.mxd-lock").unlink()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "lost the store's writer lock" in stderr
    assert json.loads(stdout)["error"] == "store_locked"


def test_lock_check_raises_once_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with WriterLock(path) as lock:
        lock.check()
        path.unlink()
        path.write_text(json.dumps({"pid": 1, "host": "x"}))
        with pytest.raises(LockError, match="lost"):
            lock.check()
    assert path.exists()  # another writer's file is left alone


def _out() -> dict[str, object]:
    return {"capture_output": True, "text": True, "check": True}
