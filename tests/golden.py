"""Load the golden vectors (a copy of ``../shared/golden`` in ``tests/data/golden``) and rebuild their graphs with mxd's API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import mxd_cli as mx
from mxd_cli.definitions import Registry, collecting
from mxd_cli.graph import FeatureGraph

# A copy kept in the repo (tests/data/sync_golden.py refreshes it from ../shared/golden).
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"

SCENARIOS = sorted(p.stem for p in (GOLDEN / "scenarios").glob("*.json"))


@cache
def scenario(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "scenarios" / f"{name}.json").read_text())
    return data


def graph_variants() -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """(scenario, graph name, truncation length, graph json) for every graph in every file."""
    for name in SCENARIOS:
        data = scenario(name)
        if "variants" in data:
            for length, variant in data["variants"].items():
                for gname, graph in variant["graphs"].items():
                    yield name, gname, int(length), graph
        else:
            for gname, graph in data["graphs"].items():
                yield name, gname, int(data["hash_truncation_length"]), graph


def _lineage(raw: dict[str, Any]) -> mx.Lineage:
    kind = raw["type"]
    if kind == "N:1":
        return mx.aggregation(on=raw["on"])
    if kind == "1:N":
        return mx.expansion(on=raw["on"])
    return mx.identity()


def _field_deps(raw: Any) -> Any:
    if raw in ("ALL", "__METAXY_ALL_DEP__"):
        return mx.ALL
    return [
        mx.FieldDep(feature=d["feature"], fields=mx.ALL if d["fields"] == "ALL" else d["fields"])
        for d in raw
    ]


def spec_of(feature: dict[str, Any]) -> mx.FeatureSpec:
    deps = [
        mx.FeatureDep(
            feature=d["feature"],
            rename=d["rename"],
            select=d["select"],
            filters=d["filters"],
            optional=d["optional"],
            lineage=_lineage(d["lineage"]),
        )
        for d in feature["deps"]
    ]
    declared = feature["metaxy_spec_model_dump"]["fields"]
    fields = [
        mx.FieldSpec(key=f["key"], code_version=f["code_version"], deps=_field_deps(f["deps"]))
        for f in declared
    ]
    return mx.FeatureSpec(
        key=feature["key"], id_columns=feature["id_columns"], deps=deps, fields=fields
    )


def build_graph(graph: dict[str, Any]) -> FeatureGraph:
    """Declare every feature of a golden graph as a BaseFeature subclass, then build the graph."""
    registry = Registry()
    with collecting(registry):
        for feature in graph["features"]:
            name = feature["feature_class_path"].rsplit(".", 1)[-1]
            type(name, (mx.BaseFeature,), {}, spec=spec_of(feature))
    return FeatureGraph(registry.features.values())
