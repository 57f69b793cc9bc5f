"""Benchmark harness: how fast mxd resolves and materializes, against a pure-Polars floor.

    python benchmarks/run.py --rows 1000000 [--store duckdb|delta] [--repeat K]
                             [--out FILE.json] [--keep] [--10m] [--profile DIR]

Builds the synthetic project of ``synthetic.py`` in a temporary folder and runs the phases
below, each mxd command and each floor step in a process of its own (so peak RSS is per
phase). Prints a table and writes everything to a JSON file. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import report
from synthetic import CLIPS, DELETE_FILTER, FEATURES, PROBE_CONFIG, write_project

HERE = Path(__file__).resolve().parent
PHASE = HERE / "phase.py"
SYNTHETIC = HERE / "synthetic.py"
REPO = HERE.parent
TEN_MILLION = 10_000_000


@dataclass(frozen=True)
class Phase:
    """One measured step: the mxd command and the floor step doing the same logical work."""

    name: str
    title: str
    mxd: tuple[str, ...]  # mxd arguments (after -c CONFIG --json); () for the write probe
    floor: str  # floor phase name, or "write" for the write probe
    full: bool = False  # also run the floor without checkpoints (the phase can use them)
    edit_before: bool = False  # edit the clips file before this phase


PHASES = (
    Phase("status_empty", "status, empty store", ("status",), "status"),
    Phase("materialize_first", "materialize, first run", ("materialize",), "materialize"),
    Phase("write", "store write (clips rows)", (), "write"),
    Phase("materialize_noop", "materialize, no-op", ("materialize",), "materialize", True),
    Phase("status_changed", "status, 1% changed", ("status",), "status", True, True),
    Phase("materialize_changed", "materialize, 1% changed", ("materialize",), "materialize", True),
    Phase(
        "delete",
        "delete --filter (1%)",
        ("delete", CLIPS, "--filter", DELETE_FILTER, "--yes"),
        "delete",
    ),
    Phase("observe", "observe", ("observe",), "observe", True),
)


@dataclass
class Bench:
    """Settings of one harness invocation."""

    store: str
    chunk_size: int
    repeat: int
    full_floor: bool
    profile: Path | None
    root: Path
    keep: bool

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def child(
    kind: str, args: list[str], timing: Path, *, preload: list[str], profile: Path | None = None
) -> dict[str, Any]:
    """Run phase.py in a fresh interpreter; return its timing plus total wall time and output."""
    cmd = [sys.executable, str(PHASE), "--timing", str(timing)]
    cmd += [f"--preload={m}" for m in preload]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    timing.unlink(missing_ok=True)
    begun = time.perf_counter()
    proc = subprocess.run([*cmd, kind, *args], capture_output=True, text=True, cwd=HERE)
    total = time.perf_counter() - begun
    out: dict[str, Any] = {"total_seconds": total, "exit": proc.returncode}
    if timing.exists():
        out.update(json.loads(timing.read_text()))
    if "No such command" in proc.stderr:
        out["state"] = "unavailable"
    elif proc.returncode != 0 or out.get("exit", 0) != 0 or not timing.exists():
        out["state"] = "failed"
        out["stderr"] = proc.stderr[-2000:]
    else:
        out["state"] = "ok"
    out["stdout"] = proc.stdout
    return out


COMPARED = (
    "stored",
    "new",
    "stale",
    "orphaned",
    "unchanged",
    "written",
    "deleted",
    "matched",
    "rows",
    "fingerprint",
    "behind_new",
    "behind_stale",
    "behind_orphaned",
)


def mxd_counts(stdout: str) -> dict[str, dict[str, Any]] | None:
    """Per-feature counts from mxd's JSON, in the floor's shape."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    counts: dict[str, dict[str, Any]] = {}
    for item in doc.get("features", []):
        row = {k: v for k, v in item.items() if k in COMPARED}
        row.update({f"behind_{k}": v for k, v in (item.get("behind") or {}).items()})
        counts[item["feature"]] = row
    return counts


def disagreements(
    mxd: dict[str, dict[str, Any]] | None, floor: dict[str, dict[str, Any]] | None
) -> list[str]:
    """Where mxd's and the floor's counts (and fingerprints) differ."""
    if mxd is None or floor is None:
        return ["no counts to compare"]
    return [
        f"{feature} {key}: mxd {mxd[feature][key]} floor {theirs[key]}"
        for feature, theirs in floor.items()
        for key in COMPARED
        if key in theirs and key in mxd.get(feature, {}) and mxd[feature][key] != theirs[key]
    ]


def run_phase(bench: Bench, phase: Phase, work: Path, n: int, rep: int) -> dict[str, Any]:
    project, floor_store, data = work / "project", work / "floor", work / "project" / "data"
    config = project / "metaxy.toml"
    preload = ["duckdb"] if bench.store == "duckdb" else ["deltalake"]
    timing = work / "timing.json"
    profile = None if bench.profile is None else bench.profile / f"{n}-{phase.name}-{rep}.prof"
    if phase.floor == "write":
        probe = project / PROBE_CONFIG
        mxd = child(
            "write-mxd", [str(config), str(probe)], timing, preload=preload, profile=profile
        )
        part = floor_store / CLIPS.replace("/", "__") / "part-00000.parquet"
        floor = child(
            "write-floor", [str(part), str(work / "write-probe.parquet")], timing, preload=[]
        )
        (work / "write-probe.parquet").unlink(missing_ok=True)
        result = {"mxd": _strip(mxd), "floor": _strip(floor)}
        written = floor.get("result") or {}
        result["rows"], result["bytes"] = written.get("rows", 0), written.get("bytes", 0)
        return result
    mxd = child(
        "mxd", ["-c", str(config), "--json", *phase.mxd], timing, preload=preload, profile=profile
    )
    floor_args = [phase.floor, "--data", str(data), "--store", str(floor_store)]
    full = None
    if phase.full and bench.full_floor:
        copy = work / "floor-full"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(floor_store, copy)
        full_args = [phase.floor, "--data", str(data), "--store", str(copy), "--full"]
        full = child("floor", full_args, timing, preload=[])
        shutil.rmtree(copy, ignore_errors=True)
    floor = child("floor", floor_args, timing, preload=[])
    counts = mxd_counts(mxd["stdout"]) if mxd["state"] == "ok" else None
    result: dict[str, Any] = {"mxd": _strip(mxd), "floor": _strip(floor)}
    if full is not None:
        result["floor_full"] = _strip(full)
    result["mxd"]["counts"] = counts
    if mxd["state"] == "ok":
        result["disagreements"] = disagreements(counts, floor.get("result"))
    return result


def _strip(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k != "stdout"}


def synthetic(action: str, data: Path, rows: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(SYNTHETIC), action, str(data), str(rows)],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    )
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def run_size(bench: Bench, n: int) -> dict[str, Any]:
    source = bench.root / f"rows-{n}" / "source"
    begun = time.perf_counter()
    layout = synthetic("roots", source, n)
    layout["seconds"] = time.perf_counter() - begun
    bench.say(f"N={n:,}: roots written in {layout['seconds']:.1f}s")
    repeats: dict[str, list[dict[str, Any]]] = {p.name: [] for p in PHASES}
    edits = None
    for rep in range(bench.repeat):
        work = bench.root / f"rows-{n}" / f"rep-{rep}"
        project = work / "project"
        shutil.copytree(source, project / "data")
        write_project(project, store=bench.store, chunk_size=bench.chunk_size)
        for phase in PHASES:
            if phase.edit_before:
                edits = synthetic("edit", project / "data", n)
            result = run_phase(bench, phase, work, n, rep)
            repeats[phase.name].append(result)
            bench.say(report.progress_line(n, rep, phase, result))
        if not bench.keep:
            shutil.rmtree(work, ignore_errors=True)
    phases = [
        {
            "phase": p.name,
            "title": p.title,
            "repeats": repeats[p.name],
            "summary": summarize(repeats[p.name]),
        }
        for p in PHASES
    ]
    return {"rows": n, "layout": layout, "edit": edits, "phases": phases}


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min–max over the repeats, and the mxd/floor ratios of the medians."""
    out: dict[str, Any] = {}
    for side in ("mxd", "floor", "floor_full"):
        ok = [r[side] for r in repeats if side in r and r[side]["state"] == "ok"]
        if not ok:
            continue
        out[side] = {
            "seconds": spread([o["seconds"] for o in ok]),
            "total_seconds": spread([o["total_seconds"] for o in ok]),
            "peak_mib": spread([o["peak_mib"] for o in ok]),
            "baseline_mib": spread([o["baseline_mib"] for o in ok]),
        }
    states = {r["mxd"]["state"] for r in repeats}
    out["state"] = "ok" if states == {"ok"} else sorted(states - {"ok"})[0]
    if "mxd" in out and "floor" in out:
        mxd, floor = out["mxd"], out["floor"]
        out["ratio"] = _ratio(mxd["seconds"]["median"], floor["seconds"]["median"])
        out["memory_ratio"] = _ratio(mxd["peak_mib"]["median"], floor["peak_mib"]["median"])
        if "floor_full" in out:
            out["ratio_full"] = _ratio(
                mxd["seconds"]["median"], out["floor_full"]["seconds"]["median"]
            )
    rows = [r.get("rows") for r in repeats if r.get("rows")]
    if rows and "mxd" in out:
        out["rows"] = rows[0]
        out["bytes"] = repeats[0].get("bytes", 0)  # Arrow size of the rows written
        for side in ("mxd", "floor"):
            if side in out:
                seconds = out[side]["seconds"]["median"]
                out[f"{side}_rows_per_second"] = rows[0] / seconds
                out[f"{side}_mib_per_second"] = out["bytes"] / 2**20 / seconds
    out["disagreements"] = sorted({d for r in repeats for d in r.get("disagreements", [])})
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _short(n: int) -> str:
    return (
        f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mxd benchmark harness (see benchmarks/README.md)")
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[100_000],
        help="samples per root (several: one run each)",
    )
    parser.add_argument(
        "--10m",
        dest="ten_million",
        action="store_true",
        help="also run N = 10,000,000 (needs ~16 GiB and time)",
    )
    parser.add_argument("--store", choices=["duckdb", "delta"], default="duckdb")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every phase K times; report median and min–max"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=1_000_000, help="rows per asset call (default 1,000,000)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON report (default benchmarks/results/<time>-<store>-<rows>.json, git-ignored)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (its path is printed)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="parent folder of the work folder (default: the temp dir)"
    )
    parser.add_argument(
        "--no-full-floor",
        dest="full_floor",
        action="store_false",
        help="skip the floor without checkpoints",
    )
    parser.add_argument("--profile", type=Path, help="cProfile every mxd phase into this folder")
    opts = parser.parse_args(argv)
    sizes = list(opts.rows) + (
        [TEN_MILLION] if opts.ten_million and TEN_MILLION not in opts.rows else []
    )
    if any(n > 2_000_000 for n in opts.rows) and not opts.ten_million:
        parser.error("N above 2,000,000 needs --10m (it takes long and ~16 GiB of RAM)")
    if opts.repeat < 1 or any(n < 100 for n in sizes):
        parser.error("--repeat must be at least 1 and --rows at least 100")
    if opts.workdir is not None:
        opts.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mxd-bench-", dir=opts.workdir))
    if opts.profile is not None:
        opts.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        opts.store, opts.chunk_size, opts.repeat, opts.full_floor, opts.profile, root, opts.keep
    )
    started = datetime.now(timezone.utc)
    if opts.out is None:
        label = "-".join(_short(n) for n in sizes)
        opts.out = HERE / "results" / f"{started:%Y%m%dT%H%M%S}-{opts.store}-{label}.json"
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "harness": {
            "argv": sys.argv if argv is None else argv,
            "started_at": started.isoformat(),
            "store": opts.store,
            "chunk_size": opts.chunk_size,
            "repeat": opts.repeat,
            "features": list(FEATURES),
            "delete_filter": DELETE_FILTER,
            "profiled": opts.profile is not None,
        },
        "machine": report.machine(),
        "versions": report.versions(REPO),
        "runs": [],
    }
    try:
        for n in sizes:
            doc["runs"].append(run_size(bench, n))
            doc["targets"] = report.targets(doc["runs"], opts.store)
            opts.out.write_text(json.dumps(doc, indent=1, default=str))
    finally:
        if opts.keep:
            bench.say(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    doc["finished_at"] = datetime.now(timezone.utc).isoformat()
    opts.out.write_text(json.dumps(doc, indent=1, default=str))
    print(report.render(doc))
    bench.say(f"JSON report: {opts.out}")
    failed = [
        p["phase"] for r in doc["runs"] for p in r["phases"] if p["summary"]["state"] == "failed"
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
