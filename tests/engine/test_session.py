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

    session = Session(
        graph, versions, dev, [prod], hashing=HashSettings("xxhash32", 8), project="p"
    )
    assert session.holder(RAW) is prod and session.served_by(RAW) is prod
    assert session.holder(CLEAN) is None
    clean = resolve(session, CLEAN)
    assert clean.counts["new"] == 4
    assert clean.new.sort("sample_uid")["metaxy_provenance"].to_list() == [
        "16772832", "20885957", "22068575", "98574842",
    ]  # fmt: skip
    Steps(dev, graph, versions, project="p").writer(CLEAN).write(clean.to_compute())
    assert dev.has(CLEAN.parts) and not dev.has(RAW.parts)
    session.forget(CLEAN)
    assert session.holder(CLEAN) is dev and session.served_by(CLEAN) is None
    again = resolve(session, CLEAN)
    assert not again.pending


def test_a_feature_a_fallback_serves_is_measured_against_it_and_adopted_to_change(
    tmp_path: Path,
) -> None:
    graph = build_graph(CHAIN["graphs"]["v1"])
    versions = GraphVersions(graph)
    prod = DeltaStore("prod", {"root_path": str(tmp_path / "prod")})
    branch = DuckDBStore("branch", {"database": str(tmp_path / "branch.duckdb")})
    in_prod = Steps(prod, graph, versions, project="p")
    in_prod.write(RAW, in_prod.resolve(RAW, SAMPLES))
    in_prod.write(CLEAN, in_prod.resolve(CLEAN))

    session = Session(
        graph, versions, branch, [prod], hashing=HashSettings("xxhash32", 8), project="p"
    )
    # Nothing differs: prod serves both features, and the branch has nothing to do.
    assert session.served_by(CLEAN) is prod
    assert resolve(session, CLEAN).counts == {
        "new": 0, "stale": 0, "orphaned": 0, "unchanged": 4, "stored": 4,
    }  # fmt: skip
    # The branch changes one raw sample and drops another: clean now differs from prod's.
    on_branch = Steps(branch, graph, versions, project="p")
    on_branch.session = session
    rows = SAMPLES.to_dicts()[:-1]
    rows[0]["metaxy_provenance_by_field"] = {
        k: f"{v}-changed" for k, v in rows[0]["metaxy_provenance_by_field"].items()
    }
    edited = pl.DataFrame(rows, schema=SAMPLES.schema)
    raw = on_branch.resolve(RAW, edited)  # (pending: it adopts prod's rows, then resolves)
    assert (raw.counts["stale"], raw.counts["orphaned"]) == (1, 1)
    assert session.holder(RAW) is branch and session.served_by(RAW) is None
    taken = branch.scan(RAW.parts)
    assert taken is not None and taken.collect().height == 4  # prod's rows, taken first
    on_branch.write(RAW, raw)
    clean = resolve(session, CLEAN)
    assert (clean.counts["stale"], clean.counts["orphaned"], clean.counts["unchanged"]) == (1, 1, 2)
    assert session.adopt(CLEAN) == 4
    again = resolve(session, CLEAN)
    assert again.counts == clean.counts  # the same work, now against the branch's own rows
    on_branch.write(CLEAN, again)
    assert not resolve(session, CLEAN).pending
    # Prod is untouched: still its four samples, and nothing pending there.
    assert not in_prod.resolve(CLEAN).pending
    assert in_prod.resolve(CLEAN).counts["stored"] == 4


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
