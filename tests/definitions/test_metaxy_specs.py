"""Reading Metaxy's serialized specs (no Metaxy needed: the golden dumps are Metaxy's own).

That the real Metaxy classes load the same way, with Metaxy's own versions, is tested in
``tests/interop/test_metaxy_projects.py``, where Metaxy is installed.
"""

from __future__ import annotations

import sys

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.definitions.metaxy_specs import (
    collecting_metaxy_features,
    metaxy_key_of,
    spec_from_metaxy,
)
from mxd_cli.errors import DefinitionError
from mxd_cli.graph import FeatureGraph
from mxd_cli.versioning import GraphVersions
from tests.golden import graph_variants

VARIANTS = list(graph_variants())


@pytest.mark.parametrize(
    ("scenario", "name", "length", "graph"),
    VARIANTS,
    ids=[f"{v[0]}-{v[1]}-t{v[2]}" for v in VARIANTS],
)
def test_golden_dumps_read_back_to_the_same_dump_and_versions(
    scenario: str, name: str, length: int, graph: dict
) -> None:
    registry = Registry()
    with collecting(registry):
        for feature in graph["features"]:
            dump = feature["metaxy_spec_model_dump"]
            spec = spec_from_metaxy(dump)
            assert spec.to_metaxy_dict() == dump
            type("F", (mx.BaseFeature,), {"__module__": "generated"}, spec=spec)
    versions = GraphVersions(FeatureGraph(registry.features.values()), truncation=length)
    for feature in graph["features"]:
        got = versions[FeatureKey.parse(feature["key"])]
        want = feature["versions"]
        assert got.feature_version == want["feature_version"]
        assert got.feature_spec_version == want["feature_spec_version"]
        assert {str(k): v for k, v in got.field_versions.items()} == want["field_versions"]


def test_every_option_survives_the_round_trip() -> None:
    spec = mx.FeatureSpec(
        key="a/b",
        id_columns=["x", "y"],
        deps=[
            mx.FeatureDep(
                feature="u/v",
                rename={"p": "q"},
                select=["q"],
                filters=["q > 1"],
                optional=True,
                lineage=mx.aggregation(),
                fields_mapping=mx.FieldsMapping.default(match_suffix=True, exclude_fields=["e/f"]),
            ),
            mx.FeatureDep(
                feature="u/w",
                lineage=mx.expansion(on=["x"]),
                fields_mapping=mx.FieldsMapping.specific({"m": ["b/c", "a"]}),
            ),
            mx.FeatureDep(feature="u/z", fields_mapping=mx.FieldsMapping.all()),
            mx.FeatureDep(feature="u/n", fields_mapping=mx.FieldsMapping.none()),
        ],
        fields=[
            "m",
            mx.FieldSpec(
                key="audio/en",
                code_version="2",
                deps=[mx.FieldDep(feature="u/v"), mx.FieldDep(feature="u/w", fields=["a", "b/c"])],
            ),
            mx.FieldSpec(key="k", deps=mx.ALL),
        ],
        metadata={"tags": ["t"]},
        description="d",
    )
    dump = spec.to_metaxy_dict()
    assert spec_from_metaxy(dump).to_metaxy_dict() == dump
    # Metaxy renders a specific mapping's set sorted, each key as its parts.
    assert dump["deps"][1]["fields_mapping"]["mapping"]["mapping"] == {"m": [["a"], ["b", "c"]]}
    # An aggregation without `on` renders as Metaxy's (null) and groups by the id columns.
    assert dump["deps"][0]["lineage"] == {"relationship": {"type": "N:1", "on": None}}
    assert spec.deps[0].lineage.on == ("x", "y")


def test_filters_may_come_under_either_name() -> None:
    dump = {"key": "a/b", "id_columns": ["id"], "deps": [{"feature": "u/v", "filters": ["x > 1"]}]}
    assert spec_from_metaxy(dump).deps[0].filters == ("x > 1",)


def test_an_unreadable_spec_names_the_feature_and_where() -> None:
    with pytest.raises(DefinitionError, match="'a/b'") as err:
        spec_from_metaxy({"key": "a/b", "id_columns": ["id"], "deps": [{}]}, where="f.py:3")
    assert err.value.location == "f.py:3"
    with pytest.raises(DefinitionError, match="lineage type"):
        spec_from_metaxy(
            {
                "key": "a/b",
                "id_columns": ["id"],
                "deps": [{"feature": "u/v", "lineage": {"relationship": {"type": "M:N"}}}],
            }
        )


def test_without_metaxy_loaded_nothing_is_collected_and_nothing_imported() -> None:
    with collecting_metaxy_features() as found:
        pass
    assert found.definitions() == []
    assert metaxy_key_of(object) is None
    assert "metaxy" not in sys.modules
