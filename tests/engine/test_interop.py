"""mxd continues stores that Metaxy wrote, and writes stores shaped like Metaxy's."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from mxd_cli.definitions import FeatureKey
from mxd_cli.store.base import FEATURE_VERSIONS, MetadataStore
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.versioning import GraphVersions
from tests.engine.test_golden_replay import replay_step
from tests.engine_steps import Steps
from tests.golden import GOLDEN, build_graph, scenario
from tests.store.conftest import _stores_json, polars_dtype

RAW, CLEAN = FeatureKey.parse("demo/raw"), FeatureKey.parse("demo/clean")
CHAIN = scenario("chain")
STEP_A = CHAIN["runs"]["xxhash32"]["steps"][0]

# The README's table of what Metaxy wrote for demo/clean (xxhash32, step a).
EXPECTED_CLEAN = {
    "s1": ({"audio": "25171922", "summary": "26917845"}, "16772832"),
    "s2": ({"audio": "21082806", "summary": "36044452"}, "20885957"),
    "s3": ({"audio": "45162328", "summary": "15653023"}, "22068575"),
    "s4": ({"audio": "17257264", "summary": "20378061"}, "98574842"),
}


def copy_golden(backend: str, tmp_path: Path) -> MetadataStore:
    if backend == "duckdb":
        shutil.copy(GOLDEN / "stores" / "chain.duckdb", tmp_path / "chain.duckdb")
        return DuckDBStore("golden", {"database": str(tmp_path / "chain.duckdb")})
    shutil.copytree(GOLDEN / "stores" / "chain_delta", tmp_path / "chain_delta")
    return DeltaStore("golden", {"root_path": str(tmp_path / "chain_delta")})


@pytest.mark.parametrize("backend", ["duckdb", "delta"])
def test_mxd_continues_a_metaxy_store(backend: str, tmp_path: Path) -> None:
    graph = build_graph(CHAIN["graphs"]["v1"])
    versions = GraphVersions(graph)
    with copy_golden(backend, tmp_path) as store:
        steps = Steps(store, graph, versions, project="golden")
        samples = pl.DataFrame(STEP_A["inputs"]["demo/raw"])
        raw = steps.resolve(RAW, samples)
        assert raw.counts == {"stored": 4, "new": 0, "stale": 0, "orphaned": 0, "unchanged": 4}
        clean = steps.resolve(CLEAN)
        assert clean.counts == {"stored": 3, "new": 1, "stale": 0, "orphaned": 0, "unchanged": 3}
        assert clean.new["sample_uid"].to_list() == ["s2"]
        steps.write(CLEAN, clean)
        current = store.read(
            CLEAN.parts,
            graph[CLEAN].spec.id_columns,
            feature_version=versions.feature_version(CLEAN),
        )
        assert current is not None
        rows = {r["sample_uid"]: r for r in current.collect().to_dicts()}
        assert sorted(rows) == ["s1", "s2", "s3", "s4"]
        for sample, (by_field, provenance) in EXPECTED_CLEAN.items():
            row = rows[sample]
            assert row["metaxy_provenance_by_field"] == by_field
            assert row["metaxy_provenance"] == row["metaxy_data_version"] == provenance
            assert row["metaxy_data_version_by_field"] == by_field
            assert row["metaxy_feature_version"] == "8c0e1404"
            assert row["path"] == f"/data/{sample}.mp4"
        again = steps.resolve(CLEAN)
        assert not again.pending
        # The rows Metaxy wrote are untouched: 5 physical rows plus mxd's one.
        physical = store.scan(CLEAN.parts)
        assert physical is not None and physical.collect().height == 6


GOLDEN_TABLES = {
    "duckdb": {
        RAW.parts: "demo__raw",
        CLEAN.parts: "demo__clean",
        FEATURE_VERSIONS: "metaxy_system__feature_versions",
    },
    "delta": {
        RAW.parts: "demo/raw.delta",
        CLEAN.parts: "demo/clean.delta",
        FEATURE_VERSIONS: "metaxy-system/feature_versions.delta",
    },
}


def golden_schema(kind: str, table: str) -> dict[str, pl.DataType]:
    columns = _stores_json()[kind]["dump"]["tables"][table]["arrow_schema"]
    return {col["name"]: polars_dtype(col["arrow_type"]) for col in columns}


@pytest.mark.parametrize("backend", ["duckdb", "delta"])
def test_mxd_writes_metaxys_table_names_columns_and_types(backend: str, tmp_path: Path) -> None:
    store: MetadataStore = (
        DuckDBStore("t", {"database": str(tmp_path / "t.duckdb")})
        if backend == "duckdb"
        else DeltaStore("t", {"root_path": str(tmp_path / "delta")})
    )
    with store:
        replay_step(CHAIN["graphs"], STEP_A, "xxhash32", 8, store)
        # As the golden store was built: soft-delete one sample of demo/clean.
        graph = build_graph(CHAIN["graphs"]["v1"])
        versions = GraphVersions(graph)
        current = store.read(
            CLEAN.parts,
            graph[CLEAN].spec.id_columns,
            feature_version=versions.feature_version(CLEAN),
        )
        assert current is not None
        writer = Steps(store, graph, versions, project="golden").writer(CLEAN)
        writer.soft_delete(current.filter(pl.col("sample_uid") == "s2").collect())
        assert store.tables() == set(GOLDEN_TABLES[backend].values())
        for table, name in GOLDEN_TABLES[backend].items():
            frame = store.scan(table)
            assert frame is not None
            assert dict(frame.collect_schema()) == golden_schema(backend, name), name
        physical = store.scan(CLEAN.parts)
        assert physical is not None and physical.collect().height == 5
