"""One writer per store: a lock file naming its holder, with stale-lock takeover.

The file is created atomically (O_CREAT | O_EXCL) and holds the holder's pid, host, start
time and command. A lock whose holder process is gone (same host, pid not alive) is taken
over; otherwise a second writer waits up to ``wait`` seconds, then fails naming the holder.
Readers never take this lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from mxd_cli.errors import LockError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """``with WriterLock(path, wait=10):`` — exclusive write access to one store."""

    def __init__(self, path: Path, *, wait: float = 0.0, command: str | None = None) -> None:
        self.path = path
        self.wait = wait
        self.command = command or " ".join(os.path.basename(a) for a in sys.argv[:2])
        self.took_over: dict[str, Any] | None = None
        self._held = False

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (as written in the file), or None."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": "?", "started_at": "?", "command": "?"}
        return data if isinstance(data, dict) else None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released in between: try again at once
                if self._stale(holder):
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"store is locked by another writer: pid {holder.get('pid')} on "
                        f"{holder.get('host')} since {holder.get('started_at')} "
                        f"({holder.get('command')})",
                        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                        location=str(self.path),
                    ) from None
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._held = True
            return

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return False
        return holder.get("host") == socket.gethostname() and not _alive(pid)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        holder = self.holder()
        if holder is not None and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
