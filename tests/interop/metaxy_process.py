"""The Metaxy driver as a process: JSON requests in, answers out, one at a time.

``submit`` sends a request and returns at once, so mxd can work in the test process while
Metaxy works in its own; ``Pending.result()`` waits for the answer. The driver's stderr
goes to a log file whose tail is quoted when a request fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DRIVER = Path(__file__).resolve().parent / "driver" / "metaxy_driver.py"
TIMEOUT = 300.0


def _clean_environment() -> dict[str, str]:
    """This process's environment without what would change Metaxy's configuration or
    which Python packages it sees; a fixed hash seed (Metaxy's column order depends on it)."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("METAXY_")}
    env["PYTHONHASHSEED"] = "0"
    return env


class MetaxyFailed(AssertionError):
    """Metaxy raised while serving a request (its traceback is the message)."""


@dataclass
class Pending:
    driver: MetaxyProcess
    request: dict[str, Any]

    def result(self) -> dict[str, Any]:
        return self.driver._answer(self)


class MetaxyProcess:
    """A running driver (``python metaxy_driver.py`` in the Metaxy environment)."""

    def __init__(self, python: Path, log: Path) -> None:
        self.log = log
        self._log_handle = log.open("w")
        self.proc = subprocess.Popen(
            [str(python), "-u", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_handle,
            text=True,
            env=_clean_environment(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self._next = 0
        self._pending: Pending | None = None
        hello = self._line()
        self.version = json.loads(hello)["ready"]

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def _line(self) -> str:
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise MetaxyFailed(f"the Metaxy driver did not answer in {TIMEOUT:.0f}s") from None
        if line is None:
            raise MetaxyFailed(f"the Metaxy driver exited:\n{self.log_tail()}")
        return line

    def log_tail(self, lines: int = 30) -> str:
        self._log_handle.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def submit(self, cmd: str, **payload: Any) -> Pending:
        if self._pending is not None:
            # A test that failed between submit and result: drop that answer.
            with contextlib.suppress(MetaxyFailed):
                self._pending.result()
        self._next += 1
        request = {"id": self._next, "cmd": cmd, **payload}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        self._pending = Pending(self, request)
        return self._pending

    def call(self, cmd: str, **payload: Any) -> dict[str, Any]:
        return self.submit(cmd, **payload).result()

    def _answer(self, pending: Pending) -> dict[str, Any]:
        if pending is not self._pending:
            raise RuntimeError("that answer was already collected")
        self._pending = None
        answer = json.loads(self._line())
        if answer["id"] != pending.request["id"]:
            raise MetaxyFailed(f"answer {answer['id']} to request {pending.request['id']}")
        if not answer["ok"]:
            raise MetaxyFailed(f"Metaxy failed on {pending.request['cmd']!r}:\n{answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log_handle.close()
