"""Smoke run of the benchmark harness (N = 10,000): it runs and reports every phase.

Timings are not asserted (benchmarks measure speed; tests do not).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = {
    "status_empty",
    "materialize_first",
    "write",
    "materialize_noop",
    "status_changed",
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
