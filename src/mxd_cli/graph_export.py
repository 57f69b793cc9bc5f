"""The feature graph as text: an indented tree, Mermaid or Graphviz dot."""

from __future__ import annotations

from collections.abc import Sequence

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.graph import FeatureGraph


def _node_id(key: FeatureKey) -> str:
    return key.table_name.replace("-", "_")


def to_mermaid(graph: FeatureGraph, keys: Sequence[FeatureKey]) -> str:
    chosen = set(keys)
    lines = ["graph TD"]
    for key in keys:
        fields = ", ".join(str(f.key) for f in graph[key].spec.fields)
        lines.append(f'    {_node_id(key)}["{key}<br/><small>{fields}</small>"]')
    for key in keys:
        for dep in graph[key].spec.deps:
            if dep.feature in chosen:
                arrow = "-.->" if dep.optional else "-->"
                lines.append(f"    {_node_id(dep.feature)} {arrow} {_node_id(key)}")
    return "\n".join(lines) + "\n"


def to_dot(graph: FeatureGraph, keys: Sequence[FeatureKey]) -> str:
    chosen = set(keys)
    lines = ["digraph features {", "    rankdir=LR;", "    node [shape=box];"]
    for key in keys:
        fields = "\\n".join(str(f.key) for f in graph[key].spec.fields)
        lines.append(f'    "{key}" [label="{key}\\n{fields}"];')
    for key in keys:
        for dep in graph[key].spec.deps:
            if dep.feature in chosen:
                style = " [style=dashed]" if dep.optional else ""
                lines.append(f'    "{dep.feature}" -> "{key}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_tree(graph: FeatureGraph, keys: Sequence[FeatureKey]) -> str:
    """Each chosen feature under its upstreams; roots first, a shared child under each parent."""
    chosen = set(keys)
    lines: list[str] = []

    def walk(key: FeatureKey, prefix: str, last: bool, depth: int) -> None:
        fields = ", ".join(str(f.key) for f in graph[key].spec.fields)
        if depth == 0:
            lines.append(f"{key}  [{fields}]")
            child_prefix = ""
        else:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{key}  [{fields}]")
            child_prefix = prefix + ("    " if last else "│   ")
        children = [k for k in graph.downstream(key) if k in chosen]
        children.sort()
        for i, child in enumerate(children):
            walk(child, child_prefix, i == len(children) - 1, depth + 1)

    tops = [k for k in keys if not any(up in chosen for up in graph[k].upstream)]
    for key in tops:
        walk(key, "", True, 0)
    return "\n".join(lines) + "\n"
