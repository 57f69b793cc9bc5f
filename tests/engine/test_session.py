"""A session reads upstream features from fallback stores and writes the feature itself to
the target store, in one engine."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mxd_cli.definitions import FeatureKey
from mxd_cli.engine.increment import resolve
from mxd_cli.engine.plan import HashSettings
from mxd_cli.engine.session import Session
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.versioning import GraphVersions
from tests.engine_steps import Steps
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
    in_prod = Steps(prod, graph, versions, project="p")
    in_prod.write(RAW, in_prod.resolve(RAW, SAMPLES))
    # Also demo/clean in prod: dev must still compute its own demo/clean.
    in_prod.write(CLEAN, in_prod.resolve(CLEAN))

    session = Session(
        graph, versions, dev, [prod], hashing=HashSettings("xxhash32", 8), project="p"
    )
    assert session.holder(RAW) is prod
    assert session.locate(RAW, own=True) is None
    clean = resolve(session, CLEAN)
    assert clean.counts["new"] == 4
    assert clean.new.sort("sample_uid")["metaxy_provenance"].to_list() == [
        "16772832", "20885957", "22068575", "98574842",
    ]  # fmt: skip
    Steps(dev, graph, versions, project="p").writer(CLEAN).write(clean.to_compute())
    assert dev.has(CLEAN.parts) and not dev.has(RAW.parts)
    session.forget(CLEAN)
    again = resolve(session, CLEAN)
    assert not again.pending


def test_duplicate_root_ids_across_batches_are_found_on_both_staging_paths(
    tmp_path: Path,
) -> None:
    # A frame held whole is checked once over all its rows; batches staged one by one
    # are checked in the engine. Either way a duplicate in two different batches fails.
    import pytest

    from mxd_cli.engine.roots import frames, stage_samples
    from mxd_cli.errors import AssetError

    graph = build_graph(CHAIN["graphs"]["v1"])
    dev = DuckDBStore("dev", {"database": str(tmp_path / "dev.duckdb")})
    session = Session(
        graph, GraphVersions(graph), dev, hashing=HashSettings("xxhash32", 8), project="p"
    )
    doubled = pl.concat([SAMPLES, SAMPLES.head(1)])  # the last row repeats the first
    for in_memory in (True, False):
        batches = list(frames(doubled, None, batch_rows=2))  # type: ignore[arg-type]
        assert len(batches) > 2
        with pytest.raises(AssetError, match="duplicate ids in .*sample_uid"):
            stage_samples(session, graph[RAW], batches, in_memory=in_memory)
    staged = stage_samples(session, graph[RAW], list(frames(SAMPLES, None, 2)), in_memory=True)  # type: ignore[arg-type]
    assert staged.rows == SAMPLES.height
