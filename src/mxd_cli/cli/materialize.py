"""`mxd materialize`: run assets on their increments; `mxd runs`: the history of runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from mxd_cli import api
from mxd_cli.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Selectors,
    Terminated,
    app,
    examples,
    state_of,
)
from mxd_cli.console import Output
from mxd_cli.engine.results import RunOptions, RunResult
from mxd_cli.errors import UsageError

_COUNTS = ["new", "stale", "orphaned", "unchanged", "written", "deleted"]
_EXIT = {"success": 0, "failed": 1, "partial": 1, "interrupted": EXIT_INTERRUPTED}


class GracefulStop:
    """First Ctrl-C or SIGTERM: finish the chunk in hand, record the run as interrupted,
    exit 130 (143 for SIGTERM). A second signal aborts at once (an uncommitted chunk is
    rolled back by the store)."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, out: Output) -> None:
        self.out = out
        self.requested: int | None = None  # the signal that asked to stop
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested is not None

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.requested == signal.SIGTERM else EXIT_INTERRUPTED

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.requested = signum
        what = "terminate" if signum == signal.SIGTERM else "interrupt"
        self.out.warn(f"{what}: stopping after the current chunk (again to abort)")

    def __enter__(self) -> GracefulStop:
        for sig in self._SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _partition(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    column, sep, value = text.partition("=")
    if not sep or not column.strip():
        raise UsageError(
            f"--partition {text!r} is not COLUMN=VALUE", hint="e.g. --partition date=2026-11-01"
        )
    return column.strip(), value


def _check_report_path(report: Path) -> None:
    """--report must be writable before the run starts (not after it committed)."""
    if report.is_dir():
        raise UsageError(f"--report {report} is a directory", hint="give a file path")
    folder = report.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"--report {report}: cannot write in {existing}", hint="choose a writable path"
        )
    if report.exists() and not os.access(report, os.W_OK):
        raise UsageError(f"--report {report} is not writable", hint="choose a writable path")


def render(out: Output, result: RunResult) -> None:
    """The per-feature table (stdout) and the one-line summary (stderr)."""
    # Counts are samples; a "rows" column joins them when a feature writes several rows
    # per sample (an expansion).
    counts = [*_COUNTS, "rows"] if result.rows != result.written else _COUNTS
    rows = [
        [f.feature, f.status, *(getattr(f, c) for c in counts), f"{f.seconds:.2f}"]
        for f in result.features
    ]
    title = f"store: {result.store}" + (" (dry run: nothing written)" if result.dry_run else "")
    out.table(
        ["feature", "status", *counts, "seconds"],
        rows,
        title=title,
        numeric=[*counts, "seconds"],
    )
    for f in result.features:
        if f.error:
            out.info(f"{f.feature} failed: {f.error}")
    verb = "would write" if result.dry_run else "wrote"
    physical = f" ({result.rows} rows)" if result.rows != result.written else ""
    out.info(
        f"Run {result.run_id} {result.status}: {verb} {result.written} samples{physical}, "
        f"deleted {result.deleted}, {len(result.features)} features in {result.seconds:.2f}s"
    )


@app.command(
    "materialize",
    epilog=examples(
        "mxd materialize",
        "mxd materialize shop/ranking+ --dry-run",
        "mxd materialize --partition day=2026-11-01 --report run.json",
        "mxd --json materialize | jq '.features[] | {feature, written}'",
    ),
)
def materialize_command(
    ctx: typer.Context,
    select: Selectors = None,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", metavar="SQL", help="Only samples matching this SQL condition (ANDed)."
        ),
    ] = None,
    keys: Annotated[
        list[str] | None,
        typer.Option(
            "--keys",
            metavar="ID,...",
            help="Only these samples: ids of a one-column key (a,b,c), or one sample per "
            "option by its id columns (doc=d1,chunk=3); downstream features follow.",
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            metavar="N",
            min=1,
            help="Only N root samples (chosen by --seed), and what derives from them.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of --sample.")] = 0,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            metavar="COLUMN=VALUE",
            help="COLUMN=VALUE: only this partition (ctx.partition).",
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", metavar="", help="Recompute every selected sample.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", metavar="", help="Show exactly what would run; write nothing."),
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast/--keep-going",
            metavar="",
            help="Stop at the first failure, or go on with features that do not depend on it.",
        ),
    ] = False,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", metavar="N", min=1, help="Rows per asset call.")
    ] = None,
    keep_orphans: Annotated[
        bool,
        typer.Option("--keep-orphans", metavar="", help="Do not soft-delete orphaned samples."),
    ] = False,
    max_orphan_fraction: Annotated[
        float | None,
        typer.Option(
            "--max-orphan-fraction",
            metavar="F",
            min=0,
            max=1,
            help="Refuse to soft-delete more than this share of a feature's samples "
            "(default 0.5, or [ext.mxd] max_orphan_fraction).",
        ),
    ] = None,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(
            "--allow-mass-delete", metavar="", help="Soft-delete orphans however many there are."
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Write the JSON run report to FILE."),
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait", metavar="SECONDS", min=0, help="Seconds to wait for another writer's lock."
        ),
    ] = None,
) -> None:
    """Run assets in topological order on their increments (new and stale samples only)."""
    state = state_of(ctx)
    out = state.output
    ids = tuple(k for k in keys or () if any(part.strip() for part in k.split(",")))
    if keys is not None and len(ids) != len(keys):
        raise UsageError(
            f"--keys {','.join(keys)!r} names no ids",
            hint="e.g. --keys id1,id2 (one id column) or --keys doc=d1,chunk=3 (one sample)",
        )
    for value in ids:
        pairs = [p for p in value.split(",") if p.strip()]
        if "=" in value and not all("=" in p and p.split("=", 1)[0].strip() for p in pairs):
            raise UsageError(
                f"--keys {value!r} mixes ids and column=value pairs",
                hint="one sample per --keys: --keys doc=d1,chunk=3",
            )
    if report is not None:
        _check_report_path(report)
    options = RunOptions(
        selectors=tuple(select or ()),
        filters=tuple(filter or ()),
        keys=ids,
        sample=sample,
        seed=seed,
        partition=_partition(partition),
        full=full,
        dry_run=dry_run,
        fail_fast=fail_fast,
        chunk_size=chunk_size,
        keep_orphans=keep_orphans,
        max_orphan_fraction=max_orphan_fraction,
        allow_mass_delete=allow_mass_delete,
    )
    project = api.Project.load(state.config)
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
    code = stop.exit_code if result.status == "interrupted" else _EXIT[result.status]
    if code:
        raise typer.Exit(code)


@app.command(
    "runs",
    epilog=examples(
        "mxd runs",
        "mxd runs --limit 5 --json",
    ),
)
def runs_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Newest N runs.")] = 20,
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
        free=["selection"],
    )
