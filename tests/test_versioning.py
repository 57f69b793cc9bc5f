from __future__ import annotations

import pytest

from mxd_cli.definitions import FeatureKey, FieldKey
from mxd_cli.versioning import GraphVersions
from tests.golden import build_graph, graph_variants

VARIANTS = list(graph_variants())


def test_every_golden_graph_is_covered() -> None:
    names = {v[0] for v in VARIANTS}
    assert names == {
        "chain", "codechange", "dataversion", "diamond", "lineage",
        "multipart", "optional", "root", "truncation",
    }  # fmt: skip
    assert {v[2] for v in VARIANTS} == {8, 12, 64}


@pytest.mark.parametrize(
    ("scenario", "name", "length", "graph"),
    VARIANTS,
    ids=[f"{v[0]}-{v[1]}-t{v[2]}" for v in VARIANTS],
)
def test_golden_versions(scenario: str, name: str, length: int, graph: dict) -> None:
    built = build_graph(graph)
    versions = GraphVersions(built, truncation=length)
    assert [str(k) for k in built.order] == graph["topological_order"]
    for feature in graph["features"]:
        key = FeatureKey.parse(feature["key"])
        expected = feature["versions"]
        got = versions[key]
        assert {str(k): v for k, v in got.field_versions.items()} == expected["field_versions"]
        assert got.feature_version == expected["feature_version"]
        assert got.feature_code_version == expected["feature_code_version"]
        assert got.feature_spec_version == expected["feature_spec_version"]
        node = built[key]
        assert {
            str(f): [str(p) for p in parents] for f, parents in node.parent_fields.items()
        } == feature["parent_fields_sorted"]
        assert node.key.table_name == feature["table_name"]
        assert [FieldKey.parse(f["key"]).struct_key for f in feature["fields"]] == [
            f["struct_key"] for f in feature["fields"]
        ]
        assert node.spec.to_metaxy_dict() == feature["metaxy_spec_model_dump"]


def test_count_of_golden_values() -> None:
    """Every field version and feature version in the golden files is compared above."""
    count = sum(
        len(f["versions"]["field_versions"]) + 1 for v in VARIANTS for f in v[3]["features"]
    )
    assert count == 71


def test_project_version_changes_with_any_spec() -> None:
    base = build_graph(next(v[3] for v in VARIANTS if v[0] == "codechange" and v[1] == "v1"))
    bumped = build_graph(next(v[3] for v in VARIANTS if v[0] == "codechange" and v[1] == "v2"))
    a, b = GraphVersions(base), GraphVersions(bumped)
    assert len(a.project_version) == 8
    assert a.project_version != b.project_version
    assert GraphVersions(base).project_version == a.project_version
