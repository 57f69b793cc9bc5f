"""Materialize under faults (SPEC §5): kill -9, Ctrl-C, a second writer, a dead lock holder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl

from mxd_cli import api
from mxd_cli.store.lock import WriterLock
from tests.cli.test_definitions import mxd
from tests.engine import materialize_project as mp
from tests.engine.test_materialize import current, run

VOLATILE = ["metaxy_created_at", "metaxy_updated_at", "metaxy_materialization_id"]


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "mxd_cli", "materialize", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_chunks(root: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(mp.calls(root, "demo/clean")) < n:
        assert time.monotonic() < deadline, "the asset never reached its chunks"
        time.sleep(0.02)


def final_state(root: Path) -> dict[str, pl.DataFrame]:
    return {
        f: current(root, f).drop(VOLATILE).sort("id")
        for f in ["demo/raw", "demo/other", "demo/clean", "demo/final"]
    }


def test_kill_9_mid_run_then_the_next_run_finishes_like_a_clean_one(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "killed")
    mp.behave(root, sleep=0.4)
    proc = start(root)
    wait_for_chunks(root, 3)  # two chunks written, the third in the asset
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # (closes the pipes)

    stored = current(root, "demo/clean")
    assert stored.height in (2, 4, 6)  # whole chunks only
    assert (root / ".mxd" / "dev.duckdb.mxd-lock").exists()  # left behind by the dead run

    code, report = status_json(root)
    assert code == 0  # the store opens cleanly for readers

    mp.behave(root)
    result = mxd("materialize", "--json", cwd=root)
    assert result.exit_code == 0, result.output
    assert "took over the store lock of a dead writer" in result.stderr
    report = json.loads(result.stdout)
    clean = {f["feature"]: f for f in report["features"]}["demo/clean"]
    assert clean["new"] == 8 - stored.height  # only the missing samples
    runs = api.runs(api.Project.load(cwd=root))["runs"]
    assert [r["status"] for r in runs] == ["success", "interrupted"]

    reference = mp.make(tmp_path / "clean")
    assert run(reference)[0] == 0
    ours, theirs = final_state(root), final_state(reference)
    for feature, frame in theirs.items():
        assert ours[feature].equals(frame), feature


def status_json(root: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = mxd("status", "--json", cwd=root)
    return result.exit_code, json.loads(result.stdout)


def test_ctrl_c_finishes_the_chunk_records_interrupted_and_exits_130(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    mp.behave(root, sleep=0.5)
    proc = start(root, "--json")
    wait_for_chunks(root, 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    report = json.loads(stdout)
    assert report["status"] == "interrupted"
    clean = {f["feature"]: f for f in report["features"]}["demo/clean"]
    assert clean["status"] == "interrupted"
    assert clean["written"] == current(root, "demo/clean").height == 2  # the chunk in hand
    assert {f["feature"]: f for f in report["features"]}["demo/final"]["status"] == "skipped"
    assert [r["status"] for r in api.runs(api.Project.load(cwd=root))["runs"]] == ["interrupted"]
    assert not (root / ".mxd" / "dev.duckdb.mxd-lock").exists()

    mp.behave(root)
    code, report = run(root)
    assert code == 0
    assert {f["feature"]: f for f in report["features"]}["demo/clean"]["new"] == 6


def test_second_writer_fails_naming_the_holder_or_waits(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    lock = WriterLock(root / ".mxd" / "dev.duckdb.mxd-lock", command="mxd materialize (test)")
    lock.acquire()
    try:
        result = mxd("materialize", cwd=root)
        assert result.exit_code == 1
        assert f"pid {os.getpid()} on {socket.gethostname()}" in result.stderr
        assert "--wait" in result.stderr
        assert not (root / ".mxd" / "dev.duckdb").exists()

        threading.Timer(0.5, lock.release).start()
        result = mxd("materialize", "--wait", "20", cwd=root)
        assert result.exit_code == 0, result.output
    finally:
        lock.release()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_captured())
    path = root / ".mxd" / "dev.duckdb.mxd-lock"
    path.parent.mkdir(parents=True)
    holder = {"pid": int(dead.stdout), "host": socket.gethostname(), "started_at": "then"}
    path.write_text(json.dumps(holder | {"command": "mxd materialize"}))
    result = mxd("materialize", cwd=root)
    assert result.exit_code == 0, result.output
    assert f"pid {holder['pid']}" in result.stderr
    assert not path.exists()


def _captured() -> dict[str, object]:
    return {"capture_output": True, "text": True, "check": True}
