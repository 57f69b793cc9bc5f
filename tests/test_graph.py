from __future__ import annotations

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.errors import DefinitionError, UsageError
from mxd_cli.graph import FeatureGraph


def build(*specs: mx.FeatureSpec) -> FeatureGraph:
    registry = Registry()
    with collecting(registry):
        for spec in specs:
            type("F", (mx.BaseFeature,), {}, spec=spec)
    return FeatureGraph(registry.features.values())


def spec(key: str, deps: list[str] = (), **kw: object) -> mx.FeatureSpec:  # type: ignore[assignment]
    return mx.FeatureSpec(key=key, id_columns=["id"], deps=list(deps), **kw)  # type: ignore[arg-type]


def keys(items: list[FeatureKey]) -> list[str]:
    return [str(k) for k in items]


def test_topological_order_breaks_ties_by_key() -> None:
    g = build(spec("z/c", ["a/x", "b/y"]), spec("b/y"), spec("a/x"), spec("a/w", ["b/y"]))
    assert keys(list(g.order)) == ["a/x", "b/y", "a/w", "z/c"]


def test_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(DefinitionError, match=r"dependency cycle: t/a -> t/b -> t/c -> t/a"):
        build(spec("t/a", ["t/c"]), spec("t/b", ["t/a"]), spec("t/c", ["t/b"]), spec("t/root"))


def test_unknown_upstream_key_with_hint() -> None:
    with pytest.raises(DefinitionError, match="depends on unknown feature t/rwa") as info:
        build(spec("t/raw"), spec("t/clean", ["t/rwa"]))
    assert info.value.hint == "did you mean 't/raw'?"


def test_unknown_field_dep_and_dep_not_declared() -> None:
    raw = mx.FeatureSpec(key="t/raw", id_columns=["id"], fields=["audio", "frames"])
    bad_field = mx.FeatureSpec(
        key="t/clean", id_columns=["id"], deps=["t/raw"],
        fields=[mx.FieldSpec(key="x", deps=[mx.FieldDep(feature="t/raw", fields=["audi"])])],
    )  # fmt: skip
    with pytest.raises(DefinitionError, match="unknown field audi of t/raw") as info:
        build(raw, bad_field)
    assert info.value.hint == "did you mean 'audio'?"
    undeclared = mx.FeatureSpec(
        key="t/clean", id_columns=["id"], deps=["t/raw"],
        fields=[mx.FieldSpec(key="x", deps=[mx.FieldDep(feature="t/other")])],
    )  # fmt: skip
    with pytest.raises(DefinitionError, match="not among the feature's deps"):
        build(raw, spec("t/other"), undeclared)


def test_default_mapping_same_key_else_all_and_explicit_mappings() -> None:
    up = mx.FeatureSpec(key="t/up", id_columns=["id"], fields=["a", "b", "c"])
    down = mx.FeatureSpec(
        key="t/down",
        id_columns=["id"],
        deps=[
            mx.FeatureDep(
                feature="t/up", fields_mapping=mx.FieldsMapping.default(exclude_fields=["c"])
            )
        ],
        fields=["a", "z"],
    )
    g = build(up, down)
    parents = {
        str(f): [str(p) for p in ps]
        for f, ps in g[FeatureKey.parse("t/down")].parent_fields.items()
    }
    assert parents == {"a": ["t/up.a"], "z": ["t/up.a", "t/up.b"]}

    specific = mx.FeatureSpec(
        key="t/down", id_columns=["id"], fields=["z"],
        deps=[mx.FeatureDep(feature="t/up", fields_mapping=mx.FieldsMapping.specific({"z": ["c"]}))],
    )  # fmt: skip
    g = build(up, specific)
    assert [
        str(p) for p in g[FeatureKey.parse("t/down")].parent_fields[mx.FieldKey.parse("z")]
    ] == ["t/up.c"]
    none = mx.FeatureSpec(
        key="t/down", id_columns=["id"], fields=["a"],
        deps=[mx.FeatureDep(feature="t/up", fields_mapping=mx.FieldsMapping.none())],
    )  # fmt: skip
    with pytest.raises(DefinitionError, match=r"t/down: field a maps to no upstream field"):
        build(up, none)  # as Metaxy: "No upstream fields found"
    other = mx.FeatureSpec(key="t/other", id_columns=["id"], fields=["a"])
    none_and_other = mx.FeatureSpec(
        key="t/down", id_columns=["id"], fields=["a"],
        deps=[
            mx.FeatureDep(feature="t/up", fields_mapping=mx.FieldsMapping.none()),
            mx.FeatureDep(feature="t/other"),
        ],
    )  # fmt: skip
    g = build(up, other, none_and_other)
    assert [
        str(p) for p in g[FeatureKey.parse("t/down")].parent_fields[mx.FieldKey.parse("a")]
    ] == ["t/other.a"]


def test_suffix_matching() -> None:
    up = mx.FeatureSpec(key="t/up", id_columns=["id"], fields=["audio/en", "video"])
    down = mx.FeatureSpec(
        key="t/down", id_columns=["id"], fields=["en"],
        deps=[mx.FeatureDep(feature="t/up", fields_mapping=mx.FieldsMapping.default(match_suffix=True))],
    )  # fmt: skip
    g = build(up, down)
    assert [
        str(p) for p in g[FeatureKey.parse("t/down")].parent_fields[mx.FieldKey.parse("en")]
    ] == ["t/up.audio/en"]


def test_lineage_and_id_columns_are_checked() -> None:
    up = mx.FeatureSpec(key="t/up", id_columns=["vid", "chunk"])
    with pytest.raises(
        DefinitionError, match=r"id column\(s\) id not among the id columns of upstream t/up"
    ):
        build(up, mx.FeatureSpec(key="t/down", id_columns=["id"], deps=["t/up"]))
    renamed = mx.FeatureSpec(
        key="t/down",
        id_columns=["id"],
        deps=[
            mx.FeatureDep(feature="t/up", rename={"vid": "id"}, lineage=mx.aggregation(on=["id"]))
        ],
    )
    assert len(build(up, renamed)) == 2
    with pytest.raises(DefinitionError, match="has id column\\(s\\) chunk that t/down lacks"):
        build(up, mx.FeatureSpec(key="t/down", id_columns=["vid"], deps=["t/up"]))
    with pytest.raises(DefinitionError, match="must name id columns"):
        build(
            up,
            mx.FeatureSpec(
                key="t/down",
                id_columns=["vid"],
                deps=[mx.FeatureDep(feature="t/up", lineage=mx.aggregation(on=["chunk"]))],
            ),
        )


@pytest.fixture
def graph() -> FeatureGraph:
    return build(
        spec("a/raw", metadata={"tags": ["source"]}),
        spec("a/clean", ["a/raw"]),
        spec("a/model", ["a/clean"], metadata={"tags": ["model"]}),
        spec("b/other"),
    )


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ([], ["a/raw", "a/clean", "a/model", "b/other"]),
        (["a/clean"], ["a/clean"]),
        (["+a/clean"], ["a/raw", "a/clean"]),
        (["a/clean+"], ["a/clean", "a/model"]),
        (["+a/clean+"], ["a/raw", "a/clean", "a/model"]),
        (["a/*"], ["a/raw", "a/clean", "a/model"]),
        (["tag:model", "b/other"], ["a/model", "b/other"]),
        (["tag:source+"], ["a/raw", "a/clean", "a/model"]),
    ],
)
def test_selection(graph: FeatureGraph, selectors: list[str], expected: list[str]) -> None:
    assert keys(graph.select(selectors)) == expected


@pytest.mark.parametrize(
    ("selector", "message", "hint"),
    [
        ("a/claen", "unknown feature 'a/claen'", "did you mean 'a/clean'?"),
        ("c/*", "matches no feature", "run 'mxd list' to see the features"),
        ("tag:modle", "no feature has tag 'modle'", "did you mean 'model'?"),
        ("A/B", "invalid feature key", None),
    ],
)
def test_bad_selectors(graph: FeatureGraph, selector: str, message: str, hint: str | None) -> None:
    with pytest.raises(UsageError, match=message) as info:
        graph.select([selector])
    assert info.value.hint == hint
