"""Everything a person sees: tables, JSON, messages and errors. The only module importing Rich.

stdout carries data only (a table, text such as a graph, or one JSON document); messages,
progress and errors go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
        # file=None: Rich resolves sys.stdout/sys.stderr when writing, so test runners that
        # swap the streams per invocation still capture everything.
        # Piped or redirected tables go to files and logs: 120 columns unless COLUMNS says,
        # rather than Rich's 80, which truncates the headers of the wider tables.
        piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        self._out = Console(
            no_color=not self.color, highlight=False, soft_wrap=False, width=120 if piped else None
        )
        self._err = Console(stderr=True, no_color=not self.color, highlight=False, soft_wrap=True)

    # data (stdout)
    def json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def text(self, text: str) -> None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        title: str | None = None,
        numeric: Sequence[str] = (),
    ) -> None:
        table = Table(title=title, title_justify="left", header_style="bold")
        for i, col in enumerate(columns):
            # The first column names the row (a feature, a run): never cut it short.
            widest = max((len(str(r[0])) for r in rows), default=0) if i == 0 else None
            table.add_column(
                col, justify="right" if col in numeric else "left", min_width=widest, no_wrap=i == 0
            )
        for row in rows:
            table.add_row(*(escape("" if v is None else str(v)) for v in row))
        self._out.print(table)

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
        done += f", {result.written} written, {result.deleted} deleted in {result.seconds:.2f}s"
    if result.note:
        done += f" ({result.note})"
    return done


class BarProgress(RunProgress):
    """A Rich bar per asset: rows done / total, rate and time left."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
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
            self._line(f"{feature}: {total} rows to compute")

    def rows_done(self, feature: str, rows: int) -> None:
        self._done[feature] += rows
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        done, total = self._done[feature], self._totals[feature]
        rate = done / max(now - self._started[feature], 1e-9)
        self._line(
            f"{feature}: {done}/{total} rows ({100 * done // max(total, 1)}%), {rate:,.0f}/s"
        )

    def feature_finished(self, result: Any) -> None:
        self._line(_finished_line(result))
