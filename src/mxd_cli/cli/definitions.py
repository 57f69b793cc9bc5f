"""`mxd list`, `mxd graph`, `mxd check`: what the project defines."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from mxd_cli import api
from mxd_cli.cli.app import Selectors, app, examples, state_of
from mxd_cli.errors import UsageError
from mxd_cli.graph_export import to_dot, to_mermaid, to_tree
from mxd_cli.graph_html import to_html


class GraphFormat(str, enum.Enum):
    tree = "tree"
    mermaid = "mermaid"
    dot = "dot"
    html = "html"


@app.command(
    "list",
    epilog=examples(
        "mxd list",
        "mxd list 'shop/*'",
        "mxd list stores",
        "mxd --json list | jq '.features[].feature'",
    ),
)
def list_command(
    ctx: typer.Context,
    select: Selectors = None,
    legacy_select: Annotated[
        list[str] | None,
        typer.Option("--select", metavar="SELECT", hidden=True, help="Same as SELECT."),
    ] = None,
) -> None:
    """List feature definitions (keys, fields, versions, deps), or the stores with
    `mxd list stores`. `mxd list features SELECT...` is the same as `mxd list SELECT...`."""
    state = state_of(ctx)
    out = state.output
    selectors = [*(select or ()), *(legacy_select or ())]
    what = selectors.pop(0) if selectors and selectors[0] in ("features", "stores") else "features"
    project = api.Project.load(state.config)
    if what == "stores":
        if selectors:
            raise UsageError(
                "`mxd list stores` takes no selectors", hint="use `mxd list SELECT...`"
            )
        stores = api.list_stores(project)
        if state.json:
            out.json(stores)
            return
        rows = [
            (
                s["name"] + (" (default)" if s["default"] else ""),
                s["type"],
                s["hash_algorithm"],
                ", ".join(f"{k}={v}" for k, v in s["options"].items()),
            )
            for s in stores["stores"]
        ]
        out.table(["store", "type", "hash", "options"], rows, free=["options"])
        return
    listing = api.list_features(project, selectors)
    if state.json:
        out.json(listing)
        return
    feature_rows: list[tuple[str, ...]] = []
    for f in listing["features"]:
        fields = ", ".join(f"{x['field']}@{x['code_version']}" for x in f["fields"])
        feature_rows.append(
            (
                f["feature"],
                f["feature_version"],
                ", ".join(f["id_columns"]),
                ", ".join(f["deps"]) or "-",
                fields,
            )
        )
    out.table(
        ["feature", "version", "ids", "deps", "fields"], feature_rows, free=["deps", "fields"]
    )


@app.command(
    "graph",
    epilog=examples(
        "mxd graph",
        "mxd graph --format html > graph.html",
        "mxd graph shop/ranking+ --format dot | dot -Tsvg > graph.svg",
        "mxd graph --format mermaid > graph.mmd",
    ),
)
def graph_command(
    ctx: typer.Context,
    select: Selectors = None,
    format: Annotated[
        GraphFormat,
        typer.Option("--format", "-f", metavar="tree|mermaid|dot", help="Output format."),
    ] = (GraphFormat.tree),
) -> None:
    """Print the feature graph as a tree, Mermaid, Graphviz dot, or a self-contained HTML page
    coloured by each feature's status in the store."""
    state = state_of(ctx)
    project = api.Project.load(state.config)
    if format is GraphFormat.html and not state.json:
        state.output.text(to_html(api.graph_status(project, select or [], store=state.store)))
        return
    keys = project.graph.select(select or [])
    if state.json:
        state.output.json(
            {
                "features": [str(k) for k in keys],
                "edges": [
                    {"from": str(d), "to": str(k)}
                    for k in keys
                    for d in project.graph[k].upstream
                    if d in set(keys)
                ],
            }
        )
        return
    render = {GraphFormat.tree: to_tree, GraphFormat.mermaid: to_mermaid, GraphFormat.dot: to_dot}
    assert format in render
    state.output.text(render[format](project.graph, keys))


@app.command(
    "check",
    epilog=examples(
        "mxd check",
        "mxd --json check",
        "mxd -s prod check && echo 'config OK'",
    ),
)
def check_command(ctx: typer.Context) -> None:
    """Load and validate the config and every feature definition; exit 2 on any problem."""
    state = state_of(ctx)
    project = api.Project.load(state.config)
    if state.store is not None:
        project.config.store_config(state.store)
    report = api.check(project)
    if state.json:
        state.output.json(report)
        return
    for warning in report["warnings"]:
        state.output.warn(warning)
    state.output.success(
        f"OK: {report['features']} features, {report['assets']} assets, "
        f"project version {report['project_version']} ({report['config']})"
    )
