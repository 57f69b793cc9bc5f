"""Everything a person sees: tables, JSON, messages and errors. The only module importing Rich.

stdout carries data only (a table, text such as a graph, or one JSON document); messages,
progress and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
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
        self._out = Console(no_color=not self.color, highlight=False, soft_wrap=False)
        self._err = Console(stderr=True, no_color=not self.color, highlight=False)

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
        for col in columns:
            table.add_column(col, justify="right" if col in numeric else "left")
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

    def unexpected(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.json_mode:
            self.json({"error": "internal_error", "message": message, "hint": "run with --debug"})
        self._err.print(f"[bold red]Internal error:[/bold red] {escape(message)}")
        self._err.print("[dim]Hint:[/dim] run again with --debug for the traceback")
