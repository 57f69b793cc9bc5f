"""`mxd delete`: soft (default) or hard delete of the rows a filter matches."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from mxd_cli import api
from mxd_cli.cli.app import app, examples, state_of
from mxd_cli.console import Output
from mxd_cli.errors import UsageError

_COLUMNS = ["feature", "matched", "deleted", "rows", "via"]


@app.command(
    "delete",
    epilog=examples(
        "mxd delete shop/products --filter \"category = 'gear'\" --cascade --dry-run",
        'mxd delete shop/products --filter "price > 100"',
        "mxd delete shop/reviews --all --hard --yes",
    ),
)
def delete_command(
    ctx: typer.Context,
    features: Annotated[
        list[str],
        typer.Argument(metavar="FEATURE", help="Feature keys to delete from.", show_default=False),
    ],
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="SQL",
            help="SQL WHERE condition on the current rows (several are ANDed).",
        ),
    ] = None,
    hard: Annotated[
        bool,
        typer.Option(
            "--hard",
            metavar="",
            help="Remove every stored row of the matched ids, soft-deleted ones and history "
            "included (no undo).",
        ),
    ] = False,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade", metavar="", help="Also delete downstream rows derived from the matches."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", metavar="", help="Count what would be deleted; write nothing."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", metavar="", help="Do not ask before --hard.")
    ] = False,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all", metavar="", help="Delete every current row (when no --filter is given)."
        ),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", metavar="SECONDS", min=0, help="Seconds to wait for another writer's lock."
        ),
    ] = 0.0,
) -> None:
    """Delete rows chosen by --filter: soft (tombstones, the default) or --hard."""
    state = state_of(ctx)
    out = state.output
    project = api.Project.load(state.config)
    options: dict[str, Any] = {
        "filters": filter or [],
        "all_rows": all_rows,
        "hard": hard,
        "cascade": cascade,
        "store": state.store,
    }
    if hard and not yes and not dry_run:
        if not _interactive():
            raise UsageError(
                "--hard deletes rows for good and needs confirmation, but stdin is not a terminal",
                hint="add --yes to confirm (try --dry-run first to see the counts)",
            )
        preview = api.delete(project, features, dry_run=True, **options)
        if not state.json:
            _render(out, preview)
        if preview["matched"] == 0:
            out.info("Nothing matches: nothing to delete.")
            if state.json:
                out.json(preview)
            return
        if not typer.confirm(
            f"Permanently remove {preview['matched']} sample(s) from "
            f"{_count_features(preview)} feature(s)?",
            err=True,
        ):
            out.info("Nothing was deleted.")
            raise typer.Exit(1)
    report = api.delete(project, features, dry_run=dry_run, wait=wait, **options)
    if state.json:
        out.json(report)
    else:
        _render(out, report)
    out.info(_summary(report))


def _interactive() -> bool:
    """Whether a person can answer a prompt (never prompt a script or a CI job)."""
    return sys.stdin.isatty()


def _count_features(report: dict[str, Any]) -> int:
    return sum(1 for f in report["features"] if f["matched"])


def _render(out: Output, report: dict[str, Any]) -> None:
    rows = [
        [
            f["feature"],
            f["matched"],
            f["deleted"],
            f["rows"],
            ", ".join(f["cascade_from"]) or ("-" if f["targeted"] else "cascade"),
        ]
        for f in report["features"]
    ]
    prefix = "dry run, " if report["dry_run"] else ""
    out.table(
        _COLUMNS,
        rows,
        title=f"store: {report['store']} ({prefix}{report['mode']} delete)",
        numeric=["matched", "deleted", "rows"],
        free=["via"],
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _summary(report: dict[str, Any]) -> str:
    mode, count = report["mode"], report["matched"]
    where = f"{_plural(count, 'sample')} in {_plural(_count_features(report), 'feature')}"
    if report["dry_run"]:
        return f"Dry run: would {mode}-delete {where}; nothing was written."
    if count == 0:
        return "Nothing matched: nothing was deleted."
    return f"{mode.capitalize()}-deleted {where}."
