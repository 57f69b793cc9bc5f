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
        rows = [
            [f[c] if c != "causes" else "\n".join(f["causes"]) or "-" for c in _COLUMNS]
            for f in report["features"]
        ]
        out.table(
            _COLUMNS,
            rows,
            title=f"store: {report['store']}",
            numeric=["stored", "new", "stale", "orphaned", "unchanged"],
            free=["causes"],
        )
    if exit_code and report["pending"]:
        raise typer.Exit(3)
