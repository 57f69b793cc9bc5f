"""`mxd list`, `mxd graph`, `mxd check`: what the project defines."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from mxd_cli import api
from mxd_cli.cli.app import Selectors, app, state_of
from mxd_cli.graph_export import to_dot, to_mermaid, to_tree


class ListWhat(str, enum.Enum):
    features = "features"
    stores = "stores"


class GraphFormat(str, enum.Enum):
    tree = "tree"
    mermaid = "mermaid"
    dot = "dot"


@app.command("list", epilog="Example: mxd list features --json | jq '.features[].feature'")
def list_command(
    ctx: typer.Context,
    what: Annotated[ListWhat, typer.Argument(help="features or stores")] = ListWhat.features,
    select: Annotated[
        list[str] | None, typer.Option("--select", help="Only these features (selector).")
    ] = None,
) -> None:
    """List feature definitions (keys, fields, versions, deps) or configured stores."""
    state = state_of(ctx)
    out = state.output
    project = api.Project.load(state.config)
    if what is ListWhat.stores:
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
        out.table(["store", "type", "hash", "options"], rows)
        return
    listing = api.list_features(project, select or [])
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
    out.table(["feature", "version", "ids", "deps", "fields"], feature_rows)


@app.command("graph", epilog="Example: mxd graph --format mermaid > graph.mmd")
def graph_command(
    ctx: typer.Context,
    select: Selectors = None,
    format: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = (
        GraphFormat.tree
    ),
) -> None:
    """Print the feature graph as a tree, Mermaid or Graphviz dot."""
    state = state_of(ctx)
    project = api.Project.load(state.config)
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
    state.output.text(render[format](project.graph, keys))


@app.command("check", epilog="Example: mxd check && echo 'definitions OK'")
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
