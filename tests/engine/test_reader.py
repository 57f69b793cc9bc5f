"""Reading current rows, with fallback stores for upstream features."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mxd_cli.definitions import FeatureKey
from mxd_cli.engine.increment import resolve_increment
from mxd_cli.engine.reader import CurrentRows
from mxd_cli.engine.writer import FeatureWriter
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.versioning import GraphVersions
from tests.golden import build_graph, scenario

CHAIN = scenario("chain")
RAW, CLEAN = FeatureKey.parse("demo/raw"), FeatureKey.parse("demo/clean")
SAMPLES = pl.DataFrame(CHAIN["runs"]["xxhash32"]["steps"][0]["inputs"]["demo/raw"])


def test_upstream_comes_from_a_fallback_store_and_the_feature_goes_to_the_target(
    tmp_path: Path,
) -> None:
    graph = build_graph(CHAIN["graphs"]["v1"])
    versions = GraphVersions(graph)
    prod = DeltaStore("prod", {"root_path": str(tmp_path / "prod")})
    dev = DuckDBStore("dev", {"database": str(tmp_path / "dev.duckdb")})
    # demo/raw is materialized in prod only.
    prod_reader = CurrentRows(prod, graph, versions)
    raw = resolve_increment(
        graph[RAW], graph, prod_reader, algorithm="xxhash32", length=8, samples=SAMPLES
    )
    FeatureWriter(prod, graph[RAW], versions, project="p", algorithm="xxhash32", length=8).write(
        raw.to_compute()
    )
    # Also demo/clean in prod: dev must still compute its own demo/clean.
    prod_reader.forget(RAW)
    clean_prod = resolve_increment(graph[CLEAN], graph, prod_reader, algorithm="xxhash32", length=8)
    FeatureWriter(prod, graph[CLEAN], versions, project="p", algorithm="xxhash32", length=8).write(
        clean_prod.to_compute()
    )

    reader = CurrentRows(dev, graph, versions, fallbacks=[prod])
    assert reader.source(RAW) is prod
    assert reader.own(RAW) is None
    clean = resolve_increment(
        graph[CLEAN], graph, reader, algorithm="xxhash32", length=8, own=reader.own
    )
    assert clean.counts()["new"] == 4
    assert clean.new.sort("sample_uid")["metaxy_provenance"].to_list() == [
        "16772832", "20885957", "22068575", "98574842",
    ]  # fmt: skip
    FeatureWriter(dev, graph[CLEAN], versions, project="p", algorithm="xxhash32", length=8).write(
        clean.to_compute()
    )
    assert dev.has(CLEAN.parts) and not dev.has(RAW.parts)
    reader.forget(CLEAN)
    again = resolve_increment(
        graph[CLEAN], graph, reader, algorithm="xxhash32", length=8, own=reader.own
    )
    assert not again.pending
