"""The increment oracle itself: hash rendering, versions and golden increments of Metaxy 0.1.11."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mxd_cli.definitions import FeatureKey
from mxd_cli.versioning import GraphVersions
from tests.golden import SCENARIOS, build_graph, scenario
from tests.oracle import ALGORITHMS, Id, Oracle, Samples, sample_hash

RAW = FeatureKey.parse("demo/raw")
CLEAN = FeatureKey.parse("demo/clean")


def chain_oracle(algorithm: str) -> Oracle:
    data = scenario("chain")
    oracle = Oracle(build_graph(data["graphs"]["v1"]), algorithm=algorithm, length=8)
    step = data["runs"][algorithm]["steps"][0]
    oracle.run_step({RAW: samples_of(step["inputs"]["demo/raw"], ["sample_uid"])})
    return oracle


def samples_of(rows: list[dict[str, Any]], id_columns: list[str]) -> Samples:
    return {tuple(r[c] for c in id_columns): r["metaxy_provenance_by_field"] for r in rows}


def test_chain_xxhash32_golden_values() -> None:
    oracle = chain_oracle("xxhash32")
    clean = oracle.current(CLEAN)[("s1",)]
    assert clean["provenance_by_field"] == {"audio": "25171922", "summary": "26917845"}
    assert clean["provenance"] == "16772832"
    assert clean["data_version_by_field"] == clean["provenance_by_field"]
    assert oracle.current(RAW)[("s1",)]["provenance"] == "31152777"


def test_root_md5_golden_value() -> None:
    assert chain_oracle("md5").current(RAW)[("s1",)]["provenance"] == "2c83114c"


def test_hash_rendering() -> None:
    # decimal xxhash may be shorter than the truncation; hex digests are lowercase
    assert sample_hash(
        "summary|1|demo/raw.audio|a-s1-v1|demo/raw.frames|f-s1-v1", "xxhash32", 8
    ) == ("26917845")
    assert sample_hash("k64", "xxhash32", 8) == "4487947"
    assert sample_hash("", "md5", 64) == "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(ValueError, match="wyhash"):
        sample_hash("x", "wyhash", 8)


def test_soft_delete_and_rewrite() -> None:
    oracle = chain_oracle("xxhash32")
    oracle.soft_delete(CLEAN, [("s1",), ("nope",)])
    assert ("s1",) not in oracle.current(CLEAN)
    inc = oracle.resolve(CLEAN)
    assert set(inc.new) == {("s1",)} and not inc.stale and not inc.orphaned
    oracle.apply(CLEAN, inc)
    assert oracle.resolve(CLEAN).empty


def replayable() -> Iterator[tuple[str, str, int, dict[str, Any], dict[str, Any]]]:
    """Golden runs the oracle covers: 1:1 lineage, no user-supplied data versions."""
    for name in SCENARIOS:
        data = scenario(name)
        variants = data.get("variants") or {str(data["hash_truncation_length"]): data}
        for length, variant in variants.items():
            graphs = variant["graphs"]
            lineages = {
                dep["lineage"]["type"]
                for graph in graphs.values()
                for feature in graph["features"]
                for dep in feature["deps"]
            }
            for algorithm, run in variant["runs"].items():
                supplied = any(
                    "metaxy_data_version_by_field" in row
                    for step in run["steps"]
                    for rows in step["inputs"].values()
                    for row in rows
                )
                if lineages <= {"1:1"} and not supplied and algorithm in ALGORITHMS:
                    yield name, algorithm, int(length), graphs, run


CASES = list(replayable())


def golden_ids(ids: list[Any]) -> set[Id]:
    return {tuple(i) if isinstance(i, list) else (i,) for i in ids}


@pytest.mark.parametrize(
    ("name", "algorithm", "length", "graphs", "run"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-t{c[2]}" for c in CASES],
)
def test_oracle_replays_golden_increments(
    name: str, algorithm: str, length: int, graphs: dict[str, Any], run: dict[str, Any]
) -> None:
    built = {gname: build_graph(graph) for gname, graph in graphs.items()}
    oracle: Oracle | None = None
    for step in run["steps"]:
        graph = built[step["graph"]]
        if oracle is None:
            oracle = Oracle(graph, algorithm=algorithm, length=length)
        oracle.use_graph(graph)
        for feature in graphs[step["graph"]]["features"]:
            key = FeatureKey.parse(feature["key"])
            assert oracle.feature_versions[key] == feature["versions"]["feature_version"]
            assert oracle.feature_versions[key] == GraphVersions(graph, length).feature_version(key)
        samples = {
            FeatureKey.parse(k): samples_of(rows, list(graph[FeatureKey.parse(k)].spec.id_columns))
            for k, rows in step["inputs"].items()
        }
        result = oracle.run_step(samples)
        for feature, want in step["features"].items():
            key = FeatureKey.parse(feature)
            inc = result[key]
            label = f"{step['name']} {feature}"
            assert set(inc.new) == golden_ids(want["new"]), label
            assert set(inc.stale) == golden_ids(want["stale"]), label
            assert inc.orphaned == golden_ids(want["orphaned"]), label
            id_columns = list(graph[key].spec.id_columns)
            for part, rows in (("new", inc.new), ("stale", inc.stale)):
                for row in want[f"{part}_rows"]:
                    mine = rows[tuple(row[c] for c in id_columns)]
                    assert mine.provenance == row["metaxy_provenance"], label
                    assert mine.provenance_by_field == row["metaxy_provenance_by_field"], label


def test_golden_coverage() -> None:
    # chain, codechange, diamond, multipart, optional, root x 5 algorithms + truncation 2 x 2
    assert len(CASES) == 6 * 5 + 2 * 2
