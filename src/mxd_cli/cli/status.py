"""`mxd status`: what materialize would do, per feature, and why."""

from __future__ import annotations

from typing import Annotated

import typer

from mxd_cli import api
from mxd_cli.cli.app import Selectors, app, examples, state_of

_COLUMNS = ["feature", "status", "stored", "new", "stale", "orphaned", "unchanged", "causes"]


@app.command(
    "status",
    epilog=examples(
        "mxd status",
        "mxd status 'shop/*' --filter \"category = 'shoes'\"",
        "mxd status --exit-code || mxd materialize",
    ),
)
def status_command(
    ctx: typer.Context,
    select: Selectors = None,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="SQL",
            help="SQL WHERE condition on the samples (several are ANDed).",
        ),
    ] = None,
    exit_code: Annotated[
        bool,
        typer.Option("--exit-code", metavar="", help="Exit 3 when any feature has pending work."),
    ] = False,
) -> None:
    """Per feature: stored, new, stale, orphaned and unchanged samples, and why. Read-only."""
    state = state_of(ctx)
    project = api.Project.load(state.config)
    report = api.status(project, select or [], filters=filter or [], store=state.store)
    out = state.output
    if state.json:
        out.json(report)
    else:
        # Counts are samples; a "rows" column joins them when a feature's samples hold
        # several rows each (an expansion's children).
        columns = _COLUMNS
        if any(f["rows"] != f["stored"] for f in report["features"]):
            columns = [*_COLUMNS[:3], "rows", *_COLUMNS[3:]]
        # A branch store: where each feature's rows come from (its own, or a fallback's),
        # in a column of its own instead of a cause on every served feature.
        sourced = any(f["source"] not in (None, report["store"]) for f in report["features"])
        if sourced:
            columns = [*columns[:2], "source", *columns[2:]]
        rows = []
        for f in report["features"]:
            hidden = f"served by fallback store {f['source']!r}" if sourced else None
            causes = "\n".join(c for c in f["causes"] if c != hidden) or "-"
            rows.append([f[c] if c != "causes" else causes for c in columns])
        out.table(
            columns,
            rows,
            title=f"store: {report['store']}",
            numeric=["stored", "rows", "new", "stale", "orphaned", "unchanged"],
            free=["causes"],
        )
    if exit_code and report["pending"]:
        raise typer.Exit(3)
