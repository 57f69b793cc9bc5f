"""Replay every golden scenario through mxd's engine and stores (both backends).

For each step, like Metaxy's runner: features in topological order; roots get the step's
samples, others read their upstreams; then write new ∪ stale and soft-delete orphans.
Every increment (ids and per-row hashes) and the stored state after each step must equal
what Metaxy 0.1.11 produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mxd_cli.definitions import FeatureKey
from mxd_cli.engine.increment import Increment
from mxd_cli.engine.plan import sample_key
from mxd_cli.graph import FeatureGraph
from mxd_cli.store.base import MetadataStore
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.spark import SparkStore
from mxd_cli.versioning import GraphVersions
from tests.engine_steps import Steps
from tests.golden import SCENARIOS, build_graph, scenario

# Columns that legitimately differ: mxd stamps its own project version, and Metaxy's join
# leaves a second upstream deleted_at column behind that mxd does not carry.
NOT_COMPARED = {"metaxy_project_version", "metaxy_deleted_at_right"}


def cases() -> Iterator[tuple[str, str, int, dict[str, Any], dict[str, Any]]]:
    for name in SCENARIOS:
        data = scenario(name)
        variants = data.get("variants") or {str(data["hash_truncation_length"]): data}
        for length, variant in variants.items():
            for algorithm, run in variant["runs"].items():
                yield name, algorithm, int(length), variant["graphs"], run


CASES = list(cases())


def open_store(kind: str, tmp_path: Path) -> MetadataStore:
    if kind == "duckdb":
        return DuckDBStore("t", {"database": str(tmp_path / "s.duckdb")})
    if kind == "spark":
        return SparkStore("t", {"warehouse": str(tmp_path / "spark"), "master": "local[2]"})
    return DeltaStore("t", {"root_path": str(tmp_path / "delta")})


def ids_of(frame: pl.DataFrame, key: list[str]) -> list[Any]:
    if frame.height == 0:
        return []
    rows = frame.select(key).unique().sort(key).rows()
    return [r[0] if len(key) == 1 else list(r) for r in rows]


def by_key(rows: list[dict[str, Any]], key: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in key): r for r in rows}


def assert_rows(
    label: str, golden: list[dict[str, Any]], ours: pl.DataFrame, key: list[str]
) -> int:
    """Every golden column (but NOT_COMPARED) of every golden row equals ours; returns checks."""
    mine = by_key(ours.to_dicts(), key)
    want = by_key(golden, key)
    assert sorted(mine) == sorted(want), label
    checks = 0
    for k, row in want.items():
        for column, value in row.items():
            if column in NOT_COMPARED or (column not in mine[k] and column in ("chunk_id",)):
                continue
            assert mine[k][column] == value, f"{label} {k} {column}"
            checks += 1
    return checks


def expand_children(rows: pl.DataFrame, graph: FeatureGraph, key: FeatureKey) -> pl.DataFrame:
    """The golden runner's expansion 'asset': each parent becomes frames f1 and f2."""
    extra = [c for c in graph[key].spec.id_columns if c not in rows.columns]
    if not extra or rows.height == 0:
        return rows
    children = pl.DataFrame({extra[0]: ["f1", "f2"]})
    return rows.join(children, how="cross")


def replay(
    graphs: dict[str, Any], run: dict[str, Any], algorithm: str, length: int, store: MetadataStore
) -> int:
    checks = 0
    for step in run["steps"]:
        with store.session():
            checks += replay_step(graphs, step, algorithm, length, store)
    return checks


def replay_step(
    graphs: dict[str, Any], step: dict[str, Any], algorithm: str, length: int, store: MetadataStore
) -> int:
    checks = 0
    graph = build_graph(graphs[step["graph"]])
    versions = GraphVersions(graph, length)
    steps = Steps(store, graph, versions, algorithm=algorithm, length=length, project="golden")
    for key in graph.order:
        node = graph[key]
        label = f"{step['name']} {key}"
        samples = pl.DataFrame(step["inputs"][str(key)]) if node.is_root else None
        inc: Increment = steps.resolve(key, samples)
        want = step["features"][str(key)]
        skey = list(sample_key(node))
        for part in ("new", "stale", "orphaned"):
            assert ids_of(getattr(inc, part), skey) == want[part], f"{label} {part}"
            checks += 1
        for part in ("new", "stale"):
            checks += assert_rows(f"{label} {part}", want[f"{part}_rows"], getattr(inc, part), skey)
        steps.write(key, inc, expand_children(inc.to_compute(), graph, key))
    for feature, stored in step["stored_after"].items():
        key = FeatureKey.parse(feature)
        current = store.read(
            key.parts, graph[key].spec.id_columns, feature_version=versions.feature_version(key)
        )
        assert current is not None
        frame = current.collect()
        checks += assert_rows(
            f"{step['name']} stored {feature}",
            stored["rows"],
            frame,
            list(graph[key].spec.id_columns),
        )
        assert set(stored["columns"]) - NOT_COMPARED <= set(frame.columns) | {"chunk_id"}
    return checks


SPARK_CASES = [case for case in CASES if case[1] in ("xxhash32", "md5")]
# Every case on DuckDB and Delta; on Spark every scenario with a native hash (md5) and an
# Arrow UDF one (xxhash32).
BACKEND_CASES = [
    *(pytest.param(b, *case, id=f"{b}-{case[0]}-{case[1]}-t{case[2]}")
      for b in ("duckdb", "delta") for case in CASES),
    *(pytest.param("spark", *case, id=f"spark-{case[0]}-{case[1]}-t{case[2]}",
                   marks=pytest.mark.spark) for case in SPARK_CASES),
]  # fmt: skip


@pytest.mark.parametrize(("backend", "name", "algorithm", "length", "graphs", "run"), BACKEND_CASES)
def test_golden_replay(
    backend: str,
    name: str,
    algorithm: str,
    length: int,
    graphs: dict[str, Any],
    run: dict[str, Any],
    tmp_path: Path,
) -> None:
    with open_store(backend, tmp_path) as store:
        assert replay(graphs, run, algorithm, length, store) > 0


def test_case_count() -> None:
    # 8 scenarios x 6 algorithms, plus truncation 12 and 64 x 2 algorithms.
    assert len(CASES) == 8 * 6 + 2 * 2
