"""Smoke run of the benchmark harness (N = 10,000): it runs and reports every phase; the
report with peers (one present, one missing); the Metaxy peer at N = 1,000 where its
virtual environment is already installed.

Timings are not asserted (benchmarks measure speed; tests do not).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PHASES = {
    "status_empty",
    "materialize_first",
    "write",
    "materialize_noop",
    "status_changed",
    "materialize_root",
    "status_downstream",
    "materialize_changed",
    "delete",
    "observe",
}


def test_harness_reports_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--rows",
            "10000",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout

    doc = json.loads(out.read_text())
    assert {"python", "polars", "duckdb", "mxd"} <= set(doc["versions"])
    assert doc["machine"]["cores"] >= 1
    (run,) = doc["runs"]
    assert run["rows"] == 10_000
    summaries = {p["phase"]: p["summary"] for p in run["phases"]}
    assert set(summaries) == PHASES
    for name, summary in summaries.items():
        assert summary["state"] == "ok", name
        for side in ("mxd", "floor"):
            assert summary[side]["seconds"]["median"] > 0, (name, side)
            assert summary[side]["peak_mib"]["median"] > 0, (name, side)
        assert summary["ratio"] > 0, name
        assert summary["memory_ratio"] > 0, name
    assert summaries["write"]["mxd_rows_per_second"] > 0
    assert {t["target"] for t in doc["targets"]} >= {"no-op materialize", "peak memory vs floor"}
    assert not list((tmp_path / "work").iterdir())  # the work folder is removed
    # mxd's modules were compiled before the clocks started, as a wheel's install does.
    assert doc["harness"]["bytecode"]["compiled"]
    engine = REPO / "src" / "mxd_cli" / "engine" / "increment.py"
    assert Path(importlib.util.cache_from_source(str(engine))).is_file()


def _harness_module(name: str) -> Any:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def _side(seconds: float, peak: float) -> dict[str, Any]:
    return {"state": "ok", "seconds": seconds, "total_seconds": seconds + 1, "peak_mib": peak}


def _doc_with_peers() -> dict[str, Any]:
    """A report of two phases with a present peer (``metaxy``) and a missing one."""
    run = _harness_module("run")
    missing = {"state": "missing", "reason": "install failed: no matching distribution"}
    counts = {"bench/clips": {"new": 10, "stale": 5}}
    phases = []
    for name, title, note in (
        ("status_downstream", "status downstream, root written", None),
        ("observe", "observe", "Metaxy has no observe"),
    ):
        repeats = []
        for seconds in (1.0, 3.0, 2.0):
            metaxy = _side(4 * seconds, 900.0) | {"counts": counts, "note": note}
            metaxy["disagreements"] = ["bench/clips stale: metaxy 5 floor 6"] if note else []
            repeats.append(
                {
                    "mxd": _side(seconds, 300.0) | {"baseline_mib": 100.0},
                    "floor": _side(seconds / 2, 150.0) | {"baseline_mib": 90.0},
                    "peers": {"metaxy": metaxy, "other": missing},
                }
            )
        for rep in repeats:
            rep["peers"]["metaxy"]["baseline_mib"] = 120.0
        phases.append(
            {"phase": name, "title": title, "repeats": repeats, "summary": run.summarize(repeats)}
        )
    return {
        "harness": {"store": "duckdb", "chunk_size": 1000, "repeat": 3, "profiled": False},
        "machine": {"usable_cores": 2, "ram_gib": 23.5, "cpu": "test"},
        "versions": {
            "python": "3.11",
            "polars": "2",
            "duckdb": "2",
            "deltalake": "1",
            "mxd": "0.1.0",
            "mxd_git": "abc1234",
            "mxd_src_uncommitted_changes": False,
        },
        "peers": [
            {
                "name": "metaxy",
                "version": "0.1.11",
                "missing": None,
                "packages": {"duckdb": "1.4.3"},
            },
            {
                "name": "other",
                "version": "1",
                "missing": "install failed: no matching distribution",
            },
        ],
        "runs": [{"rows": 1000, "edit": {}, "phases": phases}],
    }


def test_report_shows_a_present_peer_and_a_missing_one() -> None:
    report = _harness_module("report")
    doc = _doc_with_peers()
    summary = doc["runs"][0]["phases"][0]["summary"]
    metaxy = summary["peers"]["metaxy"]
    assert metaxy["seconds"] == {"median": 8.0, "min": 4.0, "max": 12.0}
    assert metaxy["mxd_ratio"] == pytest.approx(0.25)  # mxd median 2 s / metaxy median 8 s
    assert metaxy["floor_ratio"] == pytest.approx(8.0)
    assert summary["peers"]["other"] == {
        "state": "missing",
        "reason": "install failed: no matching distribution",
        "disagreements": [],
    }

    text = report.render(doc)
    header = next(line for line in text.splitlines() if line.startswith("phase"))
    assert header.split() == [
        "phase",
        "mxd", "s", "total", "s", "peak", "MiB",
        "metaxy", "s", "metaxy", "MiB", "mxd/metaxy",
        "other", "s", "other", "MiB", "mxd/other",
        "floor", "s", "floor", "MiB", "ratio", "mem", "ratio", "full-floor", "s", "ratio",
    ]  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith("status downstream"))
    assert "8.00 (4.00–12.00)" in row and "0.25x" in row and "missing" in row
    observed = next(line for line in text.splitlines() if line.startswith("observe"))
    assert "8.00 (4.00–12.00)†" in observed  # no equivalent in Metaxy: no ratio
    assert "peer other 1 (MISSING: install failed: no matching distribution)" in text
    assert "other: MISSING: install failed: no matching distribution" in text
    assert "† observe (metaxy): Metaxy has no observe" in text
    assert "! observe: bench/clips stale: metaxy 5 floor 6" in text
    (faster,) = [t for t in report.targets(doc["runs"], "duckdb") if "vs metaxy" in t["target"]]
    assert faster["value"] == pytest.approx(4.0) and faster["met"] is False  # goal: >= 10x

    markdown = report.markdown(doc)
    assert "| metaxy s | metaxy MiB | mxd/metaxy |" in markdown
    assert "| observe | 2.00 | 3.00 | 300 | 8.00† | 900 | - | missing |" in markdown


def _metaxy_cached() -> bool:
    peers = _harness_module("peers")
    return peers.environment.healthy(peers.METAXY) is not None


@pytest.mark.skipif(
    not _metaxy_cached(),
    reason="Metaxy peer not installed (python benchmarks/run.py --peers metaxy installs it)",
)
@pytest.mark.parametrize("store", ["duckdb", "delta"])
def test_metaxy_peer_agrees_with_the_floor(tmp_path: Path, store: str) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run.py"),
            *("--rows", "1000", "--store", store, "--peers", "metaxy", "--no-full-floor"),
            *("--out", str(out), "--workdir", str(tmp_path / "work")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    for phase in run["phases"]:
        metaxy = phase["summary"]["peers"]["metaxy"]
        assert metaxy["state"] == "ok", (phase["phase"], metaxy)
        assert metaxy["disagreements"] == [], phase["phase"]
        assert metaxy["seconds"]["median"] > 0
    assert "mxd/metaxy" in proc.stdout


def test_a_peer_whose_install_fails_is_missing_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = _harness_module("peers.environment")
    monkeypatch.setattr(environment, "HOME", tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip fails at once, without the network
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    peer = environment.Peer(
        name="nothing",
        version="0",
        requirements=("mxd-bench-no-such-distribution==0",),
        runner=tmp_path / "runner.py",
        probe="print('{}')",
    )
    said: list[str] = []
    env = environment.prepare(peer, said.append, stores=("duckdb",))
    assert env.missing is not None and env.missing.startswith("install failed: ")
    assert "mxd-bench-no-such-distribution" in env.missing
    assert env.why_missing("duckdb") == env.missing
    assert not (tmp_path / "nothing-0" / "ready.json").exists()
    assert said == ["peer nothing 0: installing mxd-bench-no-such-distribution==0 ..."]
