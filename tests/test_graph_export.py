from __future__ import annotations

import mxd_cli as mx
from mxd_cli.definitions import Registry, collecting
from mxd_cli.graph import FeatureGraph
from mxd_cli.graph_export import to_dot, to_mermaid, to_tree


def graph() -> FeatureGraph:
    registry = Registry()
    with collecting(registry):
        for spec in [
            mx.FeatureSpec(key="d/a", id_columns=["id"], fields=["x"]),
            mx.FeatureSpec(key="d/b", id_columns=["id"], deps=["d/a"]),
            mx.FeatureSpec(
                key="d/c", id_columns=["id"], deps=[mx.FeatureDep(feature="d/b", optional=True)]
            ),
        ]:
            type("F", (mx.BaseFeature,), {}, spec=spec)
    return FeatureGraph(registry.features.values())


def test_mermaid_marks_optional_deps_dashed() -> None:
    g = graph()
    assert to_mermaid(g, list(g.order)) == (
        "graph TD\n"
        '    d__a["d/a<br/><small>x</small>"]\n'
        '    d__b["d/b<br/><small>default</small>"]\n'
        '    d__c["d/c<br/><small>default</small>"]\n'
        "    d__a --> d__b\n"
        "    d__b -.-> d__c\n"
    )


def test_dot_and_tree_of_a_selection() -> None:
    g = graph()
    keys = list(g.order)[1:]
    dot = to_dot(g, keys)
    assert '"d/b" -> "d/c" [style=dashed];' in dot
    assert "d/a" not in dot
    assert to_tree(g, list(g.order)) == ("d/a  [x]\n└── d/b  [default]\n    └── d/c  [default]\n")
