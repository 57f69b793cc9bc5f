from __future__ import annotations

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, FieldKey
from mxd_cli.errors import DefinitionError


def test_feature_without_fields_has_default_field() -> None:
    spec = mx.FeatureSpec(key="a/b", id_columns=["id"])
    assert [str(f.key) for f in spec.fields] == ["default"]
    assert spec.fields[0].code_version == "__metaxy_initial__"


def test_feature_dep_accepts_key_string_class_and_coerces_deps() -> None:
    class Up(mx.BaseFeature, spec=mx.FeatureSpec(key="t/up", id_columns=["id"])):
        pass

    spec = mx.FeatureSpec(key="t/down", id_columns=["id"], deps=[Up, "t/other"])
    assert [d.feature for d in spec.deps] == [FeatureKey.parse("t/up"), FeatureKey.parse("t/other")]
    assert all(isinstance(d, mx.FeatureDep) for d in spec.deps)


def test_metaxy_dump_of_every_option() -> None:
    dep = mx.FeatureDep(
        feature="a/up",
        rename={"x": "y"},
        select=["x"],
        filters=["x > 1"],
        optional=True,
        lineage=mx.aggregation(on=["id"]),
    )
    assert dep.to_metaxy_dict() == {
        "feature": "a/up",
        "select": ["x"],
        "rename": {"x": "y"},
        "fields_mapping": {
            "mapping": {"type": "default", "match_suffix": False, "exclude_fields": []}
        },
        "sql_filters": ["x > 1"],
        "lineage": {"relationship": {"type": "N:1", "on": ["id"]}},
        "optional": True,
    }
    assert mx.expansion(on=["v"]).to_metaxy_dict() == {
        "relationship": {"type": "1:N", "on": ["v"], "id_generation_pattern": None}
    }
    field = mx.FieldSpec(key="mix", code_version=2, deps=mx.ALL)
    assert field.to_metaxy_dict() == {
        "key": "mix",
        "code_version": "2",
        "deps": "__METAXY_ALL_DEP__",
    }


def test_tags_from_metadata() -> None:
    spec = mx.FeatureSpec(key="a/b", id_columns=["id"], metadata={"tags": ["x", "y"]})
    assert spec.tags == ("x", "y")
    assert spec.field("default").key == FieldKey.parse("default")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_columns": []}, "id_columns must not be empty"),
        ({"id_columns": ["id", "id"]}, "duplicates"),
        ({"id_columns": ["metaxy_x"]}, "reserved prefix"),
        ({"id_columns": "id"}, "must be a list of strings"),
        ({"id_columns": ["id"], "deps": ["a/b"]}, "depends on itself"),
        ({"id_columns": ["id"], "deps": ["a/c", "a/c"]}, "depends on a/c twice"),
        ({"id_columns": ["id"], "fields": ["x", "x"]}, "declared twice"),
        ({"id_columns": ["id"], "fields": ["audio/en", "audio_en"]}, "share the column name"),
        ({"id_columns": ["id"], "description": 3}, "description must be a string"),
    ],
)
def test_invalid_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        mx.FeatureSpec(key="a/b", **kwargs)


def test_invalid_deps() -> None:
    with pytest.raises(DefinitionError, match="cannot rename a column to .metaxy_provenance."):
        mx.FeatureDep(feature="a/b", rename={"x": "metaxy_provenance"})
    with pytest.raises(DefinitionError, match="filters or sql_filters"):
        mx.FeatureDep(feature="a/b", filters=["x>1"], sql_filters=["x>2"])
    with pytest.raises(DefinitionError, match="feature class or a key"):
        mx.FeatureDep(feature=3.5)
    with pytest.raises(DefinitionError, match="FieldDep values or ALL"):
        mx.FieldSpec(key="x", deps=["a/b"])  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="code_version must be a string"):
        mx.FieldSpec(key="x", code_version=None)  # type: ignore[arg-type]


def test_specific_fields_mapping_renders_as_metaxy_does() -> None:
    # Metaxy keeps a set of upstream fields per field and renders it sorted, keys as parts.
    mapping = mx.FieldsMapping.specific({"mix": ["b/c", "a", "a"]})
    assert mapping.to_metaxy_dict() == {
        "mapping": {"type": "specific", "mapping": {"mix": [["a"], ["b", "c"]]}}
    }


def test_aggregation_without_on_groups_by_the_id_columns_and_renders_null() -> None:
    spec = mx.FeatureSpec(
        key="a/video",
        id_columns=["video_id"],
        deps=[mx.FeatureDep(feature="a/chunks", lineage=mx.aggregation())],
    )
    assert spec.deps[0].lineage.on == ("video_id",)
    assert spec.deps[0].to_metaxy_dict()["lineage"] == {"relationship": {"type": "N:1", "on": None}}
    explicit = mx.FeatureDep(feature="a/chunks", lineage=mx.aggregation(on=["video_id"]))
    assert explicit.to_metaxy_dict()["lineage"]["relationship"]["on"] == ["video_id"]
