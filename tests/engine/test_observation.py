"""Observations: content fingerprints, data versions, change detection and recording."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

import mxd_cli as mx
from mxd_cli import api
from mxd_cli.definitions import Registry, collecting
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.observation import Content, Observation, content_of
from mxd_cli.engine.plan import HashSettings
from mxd_cli.engine.session import Session
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import OBSERVATIONS, open_store
from mxd_cli.store import columns as c
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.lock import WriterLock
from mxd_cli.versioning import GraphVersions
from tests import populated
from tests.conftest import CHAIN
from tests.populated import BACKENDS, clone

T0 = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


def frame(
    ids: list[str], versions: list[str], created: list[datetime] | None = None
) -> pl.DataFrame:
    stamps = created or [T0] * len(ids)
    return pl.DataFrame(
        {
            "id": ids,
            c.DATA_VERSION: versions,
            c.CREATED_AT: pl.Series(stamps, dtype=c.TIMESTAMP),
            c.UPDATED_AT: pl.Series(stamps, dtype=c.TIMESTAMP),
            c.DELETED_AT: pl.Series([None] * len(ids), dtype=c.TIMESTAMP),
        }
    )


def _session(df: pl.DataFrame | None) -> tuple[Session, FeatureNode]:
    """An in-memory store holding ``df`` as the current rows of one feature."""
    registry = Registry()
    with collecting(registry):

        class Thing(mx.BaseFeature, spec=mx.FeatureSpec(key="a/b", id_columns=["id"])):
            pass

    graph = FeatureGraph(registry.features.values())
    versions = GraphVersions(graph)
    key = FeatureKey.parse("a/b")
    store = DuckDBStore("t", {"database": ":memory:"})
    if df is not None:
        stamped = df.with_columns(pl.lit(versions.feature_version(key)).alias(c.FEATURE_VERSION))
        store.append(key.parts, stamped)
    session = Session(graph, versions, store, hashing=HashSettings("xxhash32", 8), project="t")
    return session, graph[key]


def content(df: pl.DataFrame | None) -> Content:
    session, node = _session(df)
    try:
        return content_of(session, node)
    finally:
        session.store.close()


# A fixed frame and its fingerprint: pins the recipe across processes and library versions.
PINNED = frame(["a", "b", "c"], ["1", "2", "3"])
PINNED_FINGERPRINT = "8a7556d9d87d083eeb957f4ee19e42e5"


def test_fingerprint_is_order_independent_and_exact() -> None:
    base = content(PINNED)
    assert base.fingerprint == PINNED_FINGERPRINT
    assert content(PINNED.reverse()).fingerprint == base.fingerprint
    recomputed = PINNED.with_columns(
        pl.when(pl.col("id") == "b")
        .then(pl.lit("9"))
        .otherwise(pl.col(c.DATA_VERSION))
        .alias(c.DATA_VERSION)
    )
    assert content(recomputed).fingerprint != base.fingerprint
    assert content(PINNED.head(2)).fingerprint != base.fingerprint
    # Moving a data version to another sample changes it too (ids and versions are paired).
    swapped = frame(["a", "b", "c"], ["2", "1", "3"])
    assert content(swapped).fingerprint != base.fingerprint


def test_fingerprint_first_half_is_the_sum_of_xxh64_digests() -> None:
    import xxhash  # an independent implementation of the same hash

    texts = ["id=a|dv=1", "id=b|dv=2", "id=c|dv=3"]
    total = sum(xxhash.xxh64(t.encode()).intdigest() for t in texts) % 2**64
    assert PINNED_FINGERPRINT[:16] == f"{total:016x}"


def test_fingerprint_is_the_same_in_another_process() -> None:
    code = (
        "from tests.engine.test_observation import PINNED, content; "
        "print(content(PINNED).fingerprint)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == PINNED_FINGERPRINT


def test_data_version_is_the_mean_creation_time() -> None:
    df = frame(["a", "b"], ["1", "2"], [T0, T0 + timedelta(hours=2)])
    got = content(df)
    assert got.rows == 2
    assert got.data_version == "2025-01-01T13:00:00+00:00"
    assert got.last_written_at == T0 + timedelta(hours=2)


def test_nothing_stored_is_empty() -> None:
    got = content(None)
    assert (got.rows, got.data_version, got.last_written_at) == (0, "empty", None)
    empty = content(PINNED.clear())
    assert (empty.rows, empty.data_version, empty.fingerprint) == (0, "empty", got.fingerprint)


def test_changed_compares_with_the_previous_fingerprint() -> None:
    seen = Observation(FeatureKey.parse("a/b"), "fv", content(PINNED))
    empty = Observation(FeatureKey.parse("a/b"), "fv", content(None))
    assert seen.with_previous(None).changed  # first look at data
    assert not empty.with_previous(None).changed  # first look at nothing
    assert not seen.with_previous(PINNED_FINGERPRINT).changed
    assert seen.with_previous("0" * 32).changed
    assert empty.with_previous(PINNED_FINGERPRINT).changed  # everything went away


@pytest.fixture(scope="module", params=BACKENDS)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return populated.template(tmp_path_factory, request.param)


def test_observe_records_and_notices_a_delete(template: Path, tmp_path: Path) -> None:
    project = api.Project.load(cwd=clone(template, tmp_path / "qs"))
    first = api.observe(project)
    assert first["recorded"] and first["changed"]
    assert [(f["rows"], f["changed"], f["behind"]) for f in first["features"]] == [
        (8, True, {"new": 0, "stale": 0, "orphaned": 0})
    ] * 5
    second = api.observe(project)
    assert not second["changed"]
    assert [f["fingerprint"] for f in second["features"]] == [
        f["fingerprint"] for f in first["features"]
    ]
    api.delete(project, ["shop/reviews"], filters=["review_count < 50"])  # p004, p007
    third = {f["feature"]: f for f in api.observe(project)["features"]}
    assert [k for k, f in third.items() if f["changed"]] == ["shop/reviews"]
    reviews = third["shop/reviews"]
    assert reviews["rows"] == 6
    assert reviews["behind"] == {"new": 2, "stale": 0, "orphaned": 0}
    assert third["shop/pricing"]["behind"] == {"new": 0, "stale": 0, "orphaned": 2}
    with open_store(project.config.store_config()) as store:
        recorded = store.scan(OBSERVATIONS)
        assert recorded is not None
        table = recorded.collect()
    assert table.height == 15
    changed = table.filter(pl.col("changed")).group_by("feature").len()
    assert dict(changed.iter_rows()) == {
        "shop/products": 1, "shop/reviews": 2, "shop/pricing": 1, "shop/text_stats": 1,
        "shop/ranking": 1,
    }  # fmt: skip


def test_features_without_assets_are_observed(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN)
    project = api.Project.load(cwd=root)
    raw = FeatureKey.parse("demo/raw")
    from tests.engine_steps import Steps

    with open_store(project.config.store_config()) as store:
        steps = Steps(store, project.graph, project.versions)
        samples = pl.DataFrame({"id": [1, 2, 3], "value": ["A", "B", "C"]})
        steps.write(raw, steps.resolve(raw, samples))
    report = {f["feature"]: f for f in api.observe(project)["features"]}
    assert report["demo/raw"]["rows"] == 3
    assert report["demo/raw"]["behind"] == {"new": 0, "stale": 0, "orphaned": 0}
    assert report["demo/clean"]["rows"] == 0
    assert report["demo/clean"]["data_version"] == "empty"
    assert report["demo/clean"]["behind"] == {"new": 3, "stale": 0, "orphaned": 0}
    assert (report["demo/raw"]["changed"], report["demo/clean"]["changed"]) == (True, False)


def test_a_held_lock_leaves_the_observation_unrecorded(template: Path, tmp_path: Path) -> None:
    project = api.Project.load(cwd=clone(template, tmp_path / "qs"))
    api.observe(project)
    with open_store(project.config.store_config()) as store:
        lock_path = store.lock_path()
    assert lock_path is not None
    with WriterLock(lock_path, command="test writer"):
        report = api.observe(project, wait=0)
    assert not report["recorded"]
    assert "not recorded" in report["warning"] and "test writer" in report["warning"]
    assert not report["changed"]
    with open_store(project.config.store_config()) as store:
        recorded = store.scan(OBSERVATIONS)
        assert recorded is not None
        assert recorded.select(pl.len()).collect().item() == 5
