"""One writer per store: an ``flock`` on a lock file that names its holder.

The kernel owns the lock: ``fcntl.flock`` is taken atomically and released when the holder
exits, however it exits (``kill -9`` included), so a dead writer never blocks the next one
and two writers can never both win a race for a lock left behind. The file's content —
pid, host, start time and command — is only for messages.

A holder checks before each commit that the lock file is still the one it locked
(:meth:`WriterLock.check`): if someone deleted or replaced it, another writer may be running,
and the holder stops with a :class:`~mxd_cli.errors.LockError` (exit 1).

Stores name their lock file after their resolved location (symlinks followed), so every
alias of one store shares one lock. Readers never take it.
"""

from __future__ import annotations

import fcntl
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

#: A lock file whose content cannot be read is taken over once it is this old (seconds):
#: only a writer between creating it and writing its name could have left it so recently.
UNREADABLE_GRACE = 5.0


class WriterLock:
    """``with WriterLock(path, wait=10):`` — exclusive write access to one store.

    Example::

        with WriterLock(Path("dev.duckdb.mxd-lock"), command="mxd materialize") as lock:
            ...  # write; call lock.check() before each commit
    """

    def __init__(self, path: Path, *, wait: float = 0.0, command: str | None = None) -> None:
        self.path = path
        self.wait = wait
        self.command = command or " ".join(os.path.basename(a) for a in sys.argv[:2])
        #: What the lock file said when this writer took it over (a dead or unknown holder).
        self.took_over: dict[str, Any] | None = None
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """Who the lock file names (None: no file, or nothing readable in it)."""
        try:
            text = self.path.read_text()
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError:
            return {"unreadable": True}
        return _parse(text)

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._locked_fd()
            if fd is not None:
                content = _read_fd(fd)
                previous = _parse(content)
                if self._yields_to(previous, content, fd):
                    os.close(fd)
                else:
                    break
            if time.monotonic() >= deadline:
                raise self._busy_error()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if previous is not None or content.strip():
            self.took_over = previous or {"unreadable": True}
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        stat = os.fstat(fd)
        self._fd, self._identity = fd, (stat.st_dev, stat.st_ino)

    @staticmethod
    def _yields_to(previous: dict[str, Any] | None, content: str, fd: int) -> bool:
        """Whether a lock file nobody holds the flock of still stands for a writer."""
        if previous is None:
            # Unreadable and fresh: a writer of an older mxd may be writing its name.
            return bool(content.strip()) and _age(fd) < UNREADABLE_GRACE
        # A writer on another host: its flock may not reach us (some network file systems
        # keep locks local), so its word is taken for it.
        return previous.get("host") != socket.gethostname()

    def _locked_fd(self) -> int | None:
        """An fd of the lock file holding its flock, or None when another process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise LockError(
                f"the lock path {self.path} is a directory",
                hint="remove it; mxd keeps its writer lock in a file there",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # A holder that just released may have unlinked the file after we opened it:
        # the lock only counts if the path still names the file we locked.
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            os.close(fd)
            return self._locked_fd()
        mine = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            return self._locked_fd()
        return fd

    def _busy_error(self) -> LockError:
        holder = self.holder() or {}
        if holder.get("unreadable") or not holder:
            who = "a writer whose lock file cannot be read"
        else:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since "
                f"{holder.get('started_at')} ({holder.get('command')})"
            )
        hint = "wait for it to finish, or pass --wait SECONDS to queue behind it"
        if holder.get("host") not in (None, socket.gethostname()):
            hint += f"; if no mxd runs on {holder.get('host')} any more, delete {self.path}"
        return LockError(
            f"store is locked by another writer: {who}",
            hint=hint,
            location=str(self.path),
        )

    def check(self) -> None:
        """Raise :class:`LockError` when this writer no longer holds the store's lock (its
        file was deleted or replaced, so another writer may have taken the store)."""
        if self._fd is None:
            return
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != self._identity:
            raise LockError(
                f"lost the store's writer lock: {self.path} was removed or replaced",
                hint="another writer may be running; nothing more was written by this one",
                location=str(self.path),
            )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) == self._identity:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # releases the flock

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


def _parse(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def _read_fd(fd: int) -> str:
    return os.pread(fd, 65536, 0).decode("utf-8", "replace")


def _age(fd: int) -> float:
    return time.time() - os.fstat(fd).st_mtime
