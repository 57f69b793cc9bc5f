"""`mxd observe`: record and print what each feature holds, without computing anything."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mxd_cli import api
from mxd_cli.cli.app import Selectors, app, examples, state_of

_COLUMNS = ["feature", "samples", "fingerprint", "last write", "changed", "behind"]


@app.command(
    "observe",
    epilog=examples(
        "mxd observe",
        "mxd observe 'shop/*' --exit-code || echo 'something changed'",
    ),
)
def observe_command(
    ctx: typer.Context,
    select: Selectors = None,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            metavar="",
            help="Exit 3 when any feature changed since its last observation.",
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            help="Seconds to wait for the writer lock to record observations.",
        ),
    ] = 5.0,
) -> None:
    """Per feature: samples, data version, last write, changed, and lag behind upstream."""
    state = state_of(ctx)
    out = state.output
    project = api.Project.load(state.config)
    report = api.observe(project, select or [], store=state.store, wait=wait)
    if report["warning"]:
        out.warn(report["warning"])
    for feature in report["features"]:
        if feature["error"]:
            out.warn(f"{feature['feature']}: cannot tell how far behind: {feature['error']}")
    if state.json:
        out.json(report)
    else:
        # Counts are samples; a "rows" column joins them when some feature holds several
        # rows per sample (an expansion's children).
        physical = any(f["rows"] != f["samples"] for f in report["features"])
        columns = [*_COLUMNS[:2], "rows", *_COLUMNS[2:]] if physical else _COLUMNS
        out.table(
            columns,
            [_row(f, physical) for f in report["features"]],
            title=f"store: {report['store']}",
            numeric=["samples", "rows"],
            free=["behind"],
        )
    changed = sum(1 for f in report["features"] if f["changed"])
    out.info(
        f"Observed {len(report['features'])} feature(s): {changed} changed since the last "
        "observation." + ("" if report["recorded"] else " (not recorded)")
    )
    if exit_code and report["changed"]:
        raise typer.Exit(3)


def _row(feature: dict[str, Any], physical: bool) -> list[Any]:
    behind = [f"{n} {kind}" for kind, n in feature["behind"].items() if n]
    last = feature["last_written_at"]
    return [
        feature["feature"],
        feature["samples"],
        *([feature["rows"]] if physical else []),
        feature["fingerprint"][:12],
        last[:16].replace("T", " ") if last else "-",
        "yes" if feature["changed"] else "no",
        ", ".join(behind) or "-",
    ]
