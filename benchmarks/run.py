"""Benchmark harness: how fast mxd resolves and materializes, against a pure-Polars floor.

    python benchmarks/run.py --rows 1000000 [--store duckdb|delta|spark] [--repeat K]
                             [--peers metaxy] [--out FILE.json] [--keep] [--10m] [--profile DIR]

Builds the synthetic project of ``synthetic.py`` in a temporary folder and runs the phases
below, each mxd command, each peer's phase (``peers/``: other tools, each in a virtual
environment of its own) and each floor step in a process of its own (so peak RSS is per
phase), interleaved: within a repeat every phase runs mxd, then each peer, then the floor.
Prints a table and writes everything to a JSON file. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import report
from peers import PEERS, Environment, prepare
from synthetic import (
    CLIPS,
    DELETE_FILTER,
    EMBEDDINGS,
    FEATURES,
    PROBE_CONFIG,
    SCORES,
    write_project,
)

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
    # The changed root written alone, then its downstream resolved: the headline comparison
    # (what Metaxy's resolve_update of a downstream feature does after a root moved).
    Phase(
        "materialize_root",
        "materialize clips (1% changed)",
        ("materialize", CLIPS),
        "materialize_root",
        True,
    ),
    Phase(
        "status_downstream",
        "status downstream, root written",
        ("status", EMBEDDINGS, SCORES),
        "status_downstream",
        True,
    ),
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
    peers: tuple[Environment, ...] = ()

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def compile_mxd() -> dict[str, Any]:
    """Write the bytecode of mxd's own modules, as installing a wheel does.

    The phases import most of mxd after their clock starts (the store backend and the
    engine are imported on first use). Where bytecode is not written
    (``PYTHONDONTWRITEBYTECODE``, set on some machines, or a read-only checkout), an
    editable install would compile those sources again in every measured process:
    ~35 ms of each command's work that no installed copy pays (the peers are installed
    with pip, which compiles; the floor's module is imported before its clock).
    """
    spec = importlib.util.find_spec("mxd_cli")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    ok = all(compileall.compile_dir(f, quiet=1) for f in folders)
    return {"folders": folders, "compiled": bool(folders) and ok}


def child(
    kind: str, args: list[str], timing: Path, *, preload: list[str], profile: Path | None = None
) -> dict[str, Any]:
    """Run phase.py in a fresh interpreter; return its timing plus total wall time and output."""
    cmd = [sys.executable, str(PHASE), "--timing", str(timing)]
    cmd += [f"--preload={m}" for m in preload]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    return process([*cmd, kind, *args], timing, cwd=HERE)


def process(cmd: list[str], timing: Path, *, cwd: Path) -> dict[str, Any]:
    """Run one measured process; its timing file plus total wall time, state and output."""
    timing.unlink(missing_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    begun = time.perf_counter()
    # Output to files and wait4, not subprocess.run: the kernel's peak RSS of this one
    # process is known even when it dies (an out-of-memory kill writes no timing file).
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True, cwd=cwd)
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            child.kill()
            child.wait()
            raise
        code = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    total = time.perf_counter() - begun
    # The 1-minute load average as the process started: how shared the machine was.
    out: dict[str, Any] = {"total_seconds": total, "exit": code, "load": load}
    out["process_peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    if timing.exists():
        out.update(json.loads(timing.read_text()))
    if "No such command" in errors:
        out["state"] = "unavailable"
    elif code != 0 or out.get("exit", 0) != 0 or not timing.exists():
        out["state"] = "failed"
        out["stderr"] = errors[-2000:]
    else:
        out["state"] = "ok"
    out["stdout"] = output
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
    mine: dict[str, dict[str, Any]] | None,
    floor: dict[str, dict[str, Any]] | None,
    who: str = "mxd",
) -> list[str]:
    """Where mxd's (or a peer's) and the floor's counts (and fingerprints) differ."""
    if mine is None or floor is None:
        return ["no counts to compare"]
    return [
        f"{feature} {key}: {who} {mine[feature][key]} floor {theirs[key]}"
        for feature, theirs in floor.items()
        for key in COMPARED
        if key in theirs and key in mine.get(feature, {}) and mine[feature][key] != theirs[key]
    ]


def run_peer(bench: Bench, env: Environment, phase: Phase, work: Path) -> dict[str, Any]:
    """One phase of one peer, in its own interpreter and store (``work/<peer name>``).
    After a failed phase the peer's store is in an unknown state: its later phases in the
    same repeat are skipped, with the reason."""
    why = env.why_missing(bench.store)
    if why is not None:
        return {"state": "missing", "reason": why}
    broken = work / f"{env.peer.name}.failed"
    if broken.exists():
        return {"state": "skipped", "reason": broken.read_text()}
    peer = env.peer
    timing = work / f"timing-{peer.name}.json"
    cmd = [str(peer.python), str(peer.runner), "--timing", str(timing), "--store", bench.store]
    cmd += ["--location", str(work / peer.name), "--data", str(work / "project" / "data")]
    if bench.store == "duckdb" and env.extension_repository:
        cmd += ["--extension-repository", env.extension_repository]
    out = process([*cmd, phase.name], timing, cwd=peer.folder)
    if out["state"] == "failed":
        killed = " (killed: out of memory?)" if out["exit"] == -9 else ""
        broken.write_text(f"{phase.name} failed earlier in this repeat{killed}")
    found = out.pop("result", None) or {}
    if phase.floor == "write":
        out["rows"], out["bytes"] = found.get("rows", 0), found.get("bytes", 0)
    else:
        out["counts"], out["note"] = found.get("counts"), found.get("note")
    return _strip(out)


def run_phase(bench: Bench, phase: Phase, work: Path, n: int, rep: int) -> dict[str, Any]:
    project, floor_store, data = work / "project", work / "floor", work / "project" / "data"
    config = project / "metaxy.toml"
    preload = {"duckdb": ["duckdb"], "delta": ["deltalake"], "spark": ["pyspark"]}[bench.store]
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
        result["peers"] = {env.peer.name: run_peer(bench, env, phase, work) for env in bench.peers}
        written = floor.get("result") or {}
        result["rows"], result["bytes"] = written.get("rows", 0), written.get("bytes", 0)
        return result
    mxd = child(
        "mxd", ["-c", str(config), "--json", *phase.mxd], timing, preload=preload, profile=profile
    )
    peers = {env.peer.name: run_peer(bench, env, phase, work) for env in bench.peers}
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
    for name, peer in peers.items():
        if peer["state"] == "ok":
            peer["disagreements"] = disagreements(peer["counts"], floor.get("result"), name)
    result["peers"] = peers
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


def run_size(
    bench: Bench, n: int, saved: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Every phase of every repeat at N = ``n``; ``saved`` gets the run so far after each
    phase (so a long run that dies leaves what it measured)."""
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
            if saved is not None:
                saved(_run_doc(n, layout, edits, repeats))
        if not bench.keep:
            shutil.rmtree(work, ignore_errors=True)
    return _run_doc(n, layout, edits, repeats)


def _run_doc(
    n: int, layout: dict[str, Any], edits: Any, repeats: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    phases = [
        {
            "phase": p.name,
            "title": p.title,
            "repeats": repeats[p.name],
            "summary": summarize(repeats[p.name]),
        }
        for p in PHASES
        if repeats[p.name]
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
        if ok:
            out[side] = _sides(ok)
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
    names = sorted({name for r in repeats for name in r.get("peers", {})})
    out["peers"] = {name: _peer_summary(name, repeats, out) for name in names}
    return out


def _sides(ok: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": spread([o["seconds"] for o in ok]),
        "total_seconds": spread([o["total_seconds"] for o in ok]),
        "peak_mib": spread([o["peak_mib"] for o in ok]),
        "baseline_mib": spread([o["baseline_mib"] for o in ok]),
    }


def _peer_summary(name: str, repeats: list[dict[str, Any]], out: dict[str, Any]) -> dict[str, Any]:
    """One peer's medians and min–max, state, ratios (mxd / peer, peer / floor), notes."""
    runs = [r["peers"][name] for r in repeats if name in r.get("peers", {})]
    ok = [p for p in runs if p["state"] == "ok"]
    states = {p["state"] for p in runs}
    found: dict[str, Any] = {"state": "ok" if states == {"ok"} else sorted(states - {"ok"})[0]}
    reasons = sorted({p["reason"] for p in runs if p.get("reason")})
    if reasons:
        found["reason"] = reasons[0]
    notes = sorted({p["note"] for p in runs if p.get("note")})
    if notes:
        found["note"] = notes[0]
    found["disagreements"] = sorted({d for p in runs for d in p.get("disagreements", [])})
    failed = [
        p["process_peak_mib"] for p in runs if p["state"] == "failed" and "process_peak_mib" in p
    ]
    if failed:
        found["failed_peak_mib"] = max(failed)  # the kernel's count, for a process that died
    if not ok:
        return found
    found.update(_sides(ok))
    seconds, peak = found["seconds"]["median"], found["peak_mib"]["median"]
    if "mxd" in out:
        found["mxd_ratio"] = _ratio(out["mxd"]["seconds"]["median"], seconds)
        found["mxd_memory_ratio"] = _ratio(out["mxd"]["peak_mib"]["median"], peak)
    if "floor" in out:
        found["floor_ratio"] = _ratio(seconds, out["floor"]["seconds"]["median"])
    rows = [p.get("rows") for p in ok if p.get("rows")]
    if rows:
        found["rows_per_second"] = rows[0] / seconds
        found["mib_per_second"] = ok[0].get("bytes", 0) / 2**20 / seconds
    return found


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
    parser.add_argument("--store", choices=["duckdb", "delta", "spark"], default="duckdb")
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
    parser.add_argument(
        "--peers",
        default="",
        help=f"comma-separated peers run beside mxd ({', '.join(PEERS)}); "
        "installed into benchmarks/.peers/ on first use",
    )
    opts = parser.parse_args(argv)
    peer_names = [name.strip() for name in opts.peers.split(",") if name.strip()]
    unknown = [name for name in peer_names if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}: known are {', '.join(PEERS)}")
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

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    environments = tuple(prepare(PEERS[name], say, stores=(opts.store,)) for name in peer_names)
    for env in environments:
        why = env.why_missing(opts.store)
        say(f"peer {env.peer.name} {env.peer.version}: " + (f"MISSING ({why})" if why else "ready"))
    bench = Bench(
        opts.store,
        opts.chunk_size,
        opts.repeat,
        opts.full_floor,
        opts.profile,
        root,
        opts.keep,
        environments,
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
            "peers": peer_names,
            "bytecode": compile_mxd(),
        },
        "machine": report.machine(),
        "versions": report.versions(REPO),
        "peers": [env.describe() for env in environments],
        "runs": [],
    }

    if not doc["harness"]["bytecode"]["compiled"]:
        say("mxd's bytecode could not be written: each phase compiles the modules it imports")

    def save(partial: dict[str, Any] | None = None) -> None:
        runs = doc["runs"] if partial is None else [*doc["runs"], partial]
        shown = {**doc, "runs": runs, "partial": partial is not None}
        shown["targets"] = report.targets(runs, opts.store)
        opts.out.write_text(json.dumps(shown, indent=1, default=str))

    try:
        for n in sizes:
            doc["runs"].append(run_size(bench, n, save))
            doc["targets"] = report.targets(doc["runs"], opts.store)
            save()
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
