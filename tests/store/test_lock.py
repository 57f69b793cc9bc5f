"""The writer lock, across real processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mxd_cli.errors import LockError
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.lock import WriterLock


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that takes the lock, says so, holds it, then exits."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from mxd_cli.store.lock import WriterLock
        with WriterLock(Path({str(path)!r}), command="holder"):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_fails_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb.mxd-lock"
    proc = hold(path, 2.0)
    try:
        with pytest.raises(LockError, match=f"pid {proc.pid} on {socket.gethostname()}") as info:
            WriterLock(path, wait=0).acquire()
        assert "(holder)" in info.value.message
        assert info.value.hint is not None and "--wait" in info.value.hint
        assert info.value.exit_code == 1
    finally:
        proc.communicate(timeout=10)


def test_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = hold(path, 0.5)
    start = time.monotonic()
    with WriterLock(path, wait=10) as lock:
        assert lock.holder() is not None
        assert time.monotonic() - start >= 0.3
    assert not path.exists()
    proc.communicate(timeout=10)


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    path = tmp_path / "lock"
    stale = {"pid": pid, "host": socket.gethostname(), "started_at": "x", "command": "gone"}
    path.write_text(json.dumps(stale))
    with WriterLock(path, wait=0) as lock:
        assert lock.took_over == stale
    assert not path.exists()


def test_lock_of_another_host_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_at": "t", "command": "c"}))
    with pytest.raises(LockError, match="on elsewhere"):
        WriterLock(path, wait=0.2).acquire()


def test_store_lock_paths(tmp_path: Path) -> None:
    assert DuckDBStore("m", {"database": ":memory:"}).lock_path() is None
    db = DuckDBStore("d", {"database": str(tmp_path / "s.duckdb")})
    assert db.lock_path() == tmp_path / "s.duckdb.mxd-lock"
    local = DeltaStore("l", {"root_path": str(tmp_path / "delta")})
    assert local.lock_path() == tmp_path / "delta" / ".mxd-writer.lock"
    assert DeltaStore("r", {"root_path": "s3://bucket/x"}).lock_path() is None
