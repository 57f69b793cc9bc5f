"""Everything a person sees: tables, JSON, messages and errors. The only module importing Rich.

stdout carries data only (a table, text such as a graph, or one JSON document); messages,
progress and errors go to stderr. While a command runs, :func:`data_only_stdout` sends
everything else that would reach stdout — ``print()`` in user modules and assets, and
C-level writes to file descriptor 1 — to stderr, so ``mxd --json ... | jq`` always parses.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mxd_cli.errors import MxdError

# Where data goes while data_only_stdout() is active (None: sys.stdout as it is).
_data_stream: IO[str] | None = None


class _DataFile:
    """A file-like view of the data channel, resolved at each write (for Rich)."""

    def _target(self) -> IO[str]:
        return _data_stream if _data_stream is not None else sys.stdout

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


_DATA = _DataFile()


@contextlib.contextmanager
def data_only_stdout() -> Iterator[None]:
    """Keep stdout for mxd's data while the block runs: ``sys.stdout`` is stderr, and file
    descriptor 1 (when it is a real one) is pointed at stderr too, so even extensions that
    write to fd 1 cannot break a JSON document. mxd's own output uses the saved stdout."""
    global _data_stream
    if _data_stream is not None:  # nested (an invocation inside an invocation)
        yield
        return
    original = sys.stdout
    saved_fd: int | None = None
    try:
        fd = original.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None  # a test runner's in-memory stream: redirect at the Python level only
    stream: IO[str] = original
    if fd is not None:
        original.flush()
        saved_fd = os.dup(fd)
        os.dup2(err_fd, fd)
        stream = os.fdopen(saved_fd, "w", encoding=original.encoding or "utf-8", closefd=False)
    _data_stream = stream
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            stream.flush()
        sys.stdout = original
        _data_stream = None
        if fd is not None and saved_fd is not None:
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass
class Output:
    """How this invocation prints: JSON or human, quiet or verbose, with or without colour."""

    json_mode: bool = False
    quiet: bool = False
    verbose: int = 0
    color: bool = True
    _out: Console = field(init=False, repr=False)
    _err: Console = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Piped or redirected tables go to files and logs: 120 columns unless COLUMNS says,
        # rather than Rich's 80, which would fold the wider tables into blocks.
        piped = not _DATA.isatty() and "COLUMNS" not in os.environ
        self._out = Console(
            file=_DATA,  # type: ignore[arg-type]
            no_color=not self.color,
            highlight=False,
            soft_wrap=False,
            width=120 if piped else None,
        )
        # file=None: Rich resolves sys.stderr when writing, so test runners that swap the
        # streams per invocation still capture everything.
        self._err = Console(stderr=True, no_color=not self.color, highlight=False, soft_wrap=True)

    # data (stdout)
    def json(self, document: Any) -> None:
        _DATA.write(json.dumps(document, indent=2, default=str) + "\n")
        _DATA.flush()

    def text(self, text: str) -> None:
        _DATA.write(text if text.endswith("\n") else text + "\n")
        _DATA.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        numeric: Sequence[str] = (),
        free: Sequence[str] = (),
    ) -> None:
        """A table whose cells are never cut: only the ``free`` (free-text) columns wrap.

        When the fixed columns do not fit the width, each row becomes a block of
        ``column value`` lines instead (narrow terminals), so nothing is truncated.
        """
        cells = [[_cell(v) for v in row] for row in rows]
        natural = [
            max([len(col), *(_longest_line(r[i]) for r in cells)]) for i, col in enumerate(columns)
        ]
        # Fixed columns take their widest cell; free-text columns at least their longest
        # word (never cut mid-word) and share what is left in proportion to their text.
        least = [
            max([min(len(col), 12), *(_longest_word(r[i]) for r in cells)], default=8)
            if col in free
            else natural[i]
            for i, col in enumerate(columns)
        ]
        overhead = 3 * len(columns) + 1  # padding and rules of the box
        spare = self._out.width - overhead - sum(least)
        if spare < 0:
            self._blocks(columns, cells, title=title)
            return
        widths = list(least)
        wants = {i: natural[i] - least[i] for i, col in enumerate(columns) if col in free}
        total = sum(wants.values())
        for i, want in wants.items():
            widths[i] += min(want, spare * want // total) if total else 0
        table = Table(title=title, title_justify="left", header_style="bold")
        for i, col in enumerate(columns):
            wraps = col in free
            table.add_column(
                col,
                justify="right" if col in numeric else "left",
                width=widths[i],
                no_wrap=not wraps,
                overflow="fold",
            )
        for row in cells:
            table.add_row(*(escape(v) for v in row))
        self._out.print(table)

    def _blocks(
        self, columns: Sequence[str], cells: Sequence[Sequence[str]], *, title: str | None
    ) -> None:
        """Rows as blocks: the first cell as a heading, then one ``column  value`` line per
        other column (values wrap in their own column), for terminals too narrow for a
        table."""
        if title:
            self._out.print(escape(title))
        for n, row in enumerate(cells):
            if n or title:
                self._out.print()
            self._out.print(escape(row[0]), overflow="fold")
            grid = Table.grid(padding=(0, 2), pad_edge=True)
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for col, value in zip(columns[1:], row[1:], strict=True):
                grid.add_row(escape(col), escape(value))
            self._out.print(grid)

    # messages (stderr)
    def info(self, message: str) -> None:
        if not self.quiet:
            self._err.print(escape(message))

    def debug(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self._err.print(f"[dim]{escape(message)}[/dim]")

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._err.print(f"[yellow]Warning:[/yellow] {escape(message)}")

    def success(self, message: str) -> None:
        if not self.quiet:
            self._err.print(f"[green]{escape(message)}[/green]")

    def error(self, err: MxdError) -> None:
        if self.json_mode:
            self.json({"error": err.code, "message": str(err), "hint": err.hint})
        self._err.print(f"[bold red]Error:[/bold red] {escape(str(err))}")
        if err.hint:
            self._err.print(f"[dim]Hint:[/dim] {escape(err.hint)}")

    def progress(self) -> RunProgress:
        """Progress of a run: Rich bars on a terminal, plain periodic lines elsewhere."""
        if self.quiet:
            return RunProgress()
        if self._err.is_terminal:
            return BarProgress(self._err)
        return LineProgress(self._err)

    def unexpected(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.json_mode:
            self.json({"error": "internal_error", "message": message, "hint": "run with --debug"})
        self._err.print(f"[bold red]Internal error:[/bold red] {escape(message)}")
        self._err.print("[dim]Hint:[/dim] run again with --debug for the traceback")


class RunProgress:
    """Shows nothing; the base of the two displays below (hooks called by a run)."""

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def feature_started(self, feature: str, total: int) -> None:
        pass

    def rows_done(self, feature: str, rows: int) -> None:
        pass

    def feature_finished(self, result: Any) -> None:
        pass


def _finished_line(result: Any) -> str:
    done = f"{result.feature}: {result.status}"
    if result.status in ("success", "failed", "interrupted"):
        physical = f" ({result.rows} rows)" if result.rows != result.written else ""
        done += f", {result.written} written{physical}, {result.deleted} deleted"
        done += f" in {result.seconds:.2f}s"
    if result.note:
        done += f" ({result.note})"
    return done


class BarProgress(RunProgress):
    """A Rich bar per asset: samples done / total, rate and time left."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("samples"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> BarProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def feature_started(self, feature: str, total: int) -> None:
        self._started[feature] = time.monotonic()
        self._tasks[feature] = self._bars.add_task(escape(feature), total=total or 1, rate="")

    def rows_done(self, feature: str, rows: int) -> None:
        task = self._tasks[feature]
        self._bars.advance(task, rows)
        done = self._bars.tasks[self._tasks_index(task)].completed
        elapsed = max(time.monotonic() - self._started[feature], 1e-9)
        self._bars.update(task, rate=f"{done / elapsed:,.0f}/s")

    def _tasks_index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self._bars.tasks) if t.id == task)

    def feature_finished(self, result: Any) -> None:
        task = self._tasks.get(result.feature)
        if task is None:
            self._bars.console.print(escape(_finished_line(result)), style="dim")
            return
        if result.status == "success":
            total = self._bars.tasks[self._tasks_index(task)].total
            self._bars.update(task, completed=total)
        self._bars.update(task, description=escape(_finished_line(result)))


class LineProgress(RunProgress):
    """Plain lines for logs: one when a feature starts and ends, and at most one every
    ``every`` seconds in between. No colours, no cursor movement."""

    def __init__(self, console: Console, every: float = 5.0) -> None:
        self._console = console
        self._every = every
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._last = 0.0
        self._started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def feature_started(self, feature: str, total: int) -> None:
        self._totals[feature], self._done[feature] = total, 0
        self._started[feature] = self._last = time.monotonic()
        if total:
            self._line(f"{feature}: {total} sample{'' if total == 1 else 's'} to compute")

    def rows_done(self, feature: str, rows: int) -> None:
        self._done[feature] += rows
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        done, total = self._done[feature], self._totals[feature]
        rate = done / max(now - self._started[feature], 1e-9)
        self._line(
            f"{feature}: {done}/{total} samples ({100 * done // max(total, 1)}%), {rate:,.0f}/s"
        )

    def feature_finished(self, result: Any) -> None:
        self._line(_finished_line(result))


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)
