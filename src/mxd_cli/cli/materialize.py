"""`mxd materialize`: run assets on their increments; `mxd runs`: the history of runs."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from mxd_cli import api
from mxd_cli.cli.app import Selectors, app, state_of
from mxd_cli.console import Output
from mxd_cli.engine.materialize import RunOptions, RunResult
from mxd_cli.errors import UsageError

_COUNTS = ["new", "stale", "orphaned", "unchanged", "written", "deleted"]
_EXIT = {"success": 0, "failed": 1, "partial": 1, "interrupted": 130}


class GracefulStop:
    """First Ctrl-C: finish the chunk in hand, record the run as interrupted, exit 130.
    A second Ctrl-C aborts at once (an uncommitted chunk is rolled back by the store)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.requested = False
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.out.warn("interrupt: stopping after the current chunk (Ctrl-C again to abort)")

    def __enter__(self) -> GracefulStop:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _partition(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    column, sep, value = text.partition("=")
    if not sep or not column.strip():
        raise UsageError(
            f"--partition {text!r} is not COLUMN=VALUE", hint="e.g. --partition date=2026-11-01"
        )
    return column.strip(), value


class _ToOutput(logging.Handler):
    """Log records (asset ``ctx.log``, mxd's own warnings) as stderr messages."""

    def __init__(self, out: Output) -> None:
        super().__init__()
        self.out = out
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.WARNING:
            self.out.warn(text)
        elif record.levelno >= logging.INFO:
            self.out.info(text)
        else:
            self.out.debug(text)


def _asset_logging(out: Output, verbose: int) -> None:
    """Route the ``mxd`` loggers to this invocation's output (replacing earlier ones)."""
    logger = logging.getLogger("mxd")
    for old in [h for h in logger.handlers if isinstance(h, _ToOutput)]:
        logger.removeHandler(old)
    logger.addHandler(_ToOutput(out))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def render(out: Output, result: RunResult) -> None:
    """The per-feature table (stdout) and the one-line summary (stderr)."""
    rows = [
        [f.feature, f.status, *(getattr(f, c) for c in _COUNTS), f"{f.seconds:.2f}"]
        for f in result.features
    ]
    title = f"store: {result.store}" + (" (dry run: nothing written)" if result.dry_run else "")
    out.table(
        ["feature", "status", *_COUNTS, "seconds"],
        rows,
        title=title,
        numeric=[*_COUNTS, "seconds"],
    )
    for f in result.features:
        if f.error:
            out.info(f"{f.feature} failed: {f.error}")
    verb = "would write" if result.dry_run else "wrote"
    out.info(
        f"Run {result.run_id} {result.status}: {verb} {result.written} rows, "
        f"deleted {result.deleted}, {len(result.features)} features in {result.seconds:.2f}s"
    )


@app.command(
    "materialize",
    epilog="Examples: mxd materialize | mxd materialize shop/ranking+ --dry-run | "
    "mxd materialize --partition day=2026-11-01 --report run.json",
)
def materialize_command(
    ctx: typer.Context,
    select: Selectors = None,
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Only samples matching this SQL condition (ANDed)."),
    ] = None,
    keys: Annotated[
        list[str] | None,
        typer.Option("--keys", help="Only these ids, comma-separated (one id column)."),
    ] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Compute at most N samples per feature.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --sample.")] = 0,
    partition: Annotated[
        str | None,
        typer.Option("--partition", help="COLUMN=VALUE: only this partition (ctx.partition)."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute every selected sample.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show exactly what would run; write nothing.")
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast/--keep-going",
            help="Stop at the first failure, or go on with features that do not depend on it.",
        ),
    ] = False,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", min=1, help="Rows per asset call.")
    ] = None,
    keep_orphans: Annotated[
        bool, typer.Option("--keep-orphans", help="Do not soft-delete orphaned samples.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the JSON run report to FILE.")
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option("--wait", min=0, help="Seconds to wait for another writer's lock."),
    ] = None,
) -> None:
    """Run assets in topological order on their increments (new and stale samples only)."""
    state = state_of(ctx)
    out = state.output
    options = RunOptions(
        selectors=tuple(select or ()),
        filters=tuple(filter or ()),
        keys=tuple(k.strip() for group in keys or () for k in group.split(",") if k.strip()),
        sample=sample,
        seed=seed,
        partition=_partition(partition),
        full=full,
        dry_run=dry_run,
        fail_fast=fail_fast,
        chunk_size=chunk_size,
        keep_orphans=keep_orphans,
    )
    project = api.Project.load(state.config)
    _asset_logging(out, state.verbose)
    with GracefulStop(out) as stop, out.progress() as progress:
        result = api.materialize(
            project,
            options,
            store=state.store,
            wait=wait,
            listener=progress,
            should_stop=stop,
        )
    document = result.to_json()
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(document | {"options": options.to_json()}, indent=2) + "\n")
    if state.json:
        out.json(document)
    else:
        render(out, result)
    code = _EXIT[result.status]
    if code:
        raise typer.Exit(code)


@app.command("runs", epilog="Example: mxd runs --limit 5 --json")
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N runs.")] = 20,
) -> None:
    """History of materialize runs: when, what, status and counts. Read-only."""
    state = state_of(ctx)
    out = state.output
    project = api.Project.load(state.config)
    history = api.runs(project, store=state.store, limit=limit)
    if state.json:
        out.json(history)
        return
    rows = [
        [
            r["run_id"],
            r["started_at"][5:19].replace("T", " "),
            "-" if r["seconds"] is None else f"{r['seconds']:.2f}",
            r["status"],
            len(r["features"]),
            r["written"],
            r["deleted"],
            " ".join(r["selection"]) or "all",
        ]
        for r in history["runs"]
    ]
    out.table(
        [
            "run",
            "started (UTC)",
            "seconds",
            "status",
            "features",
            "written",
            "deleted",
            "selection",
        ],
        rows,
        title=f"store: {history['store']}",
        numeric=["seconds", "features", "written", "deleted"],
    )
