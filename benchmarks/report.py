"""What the harness reports: machine facts, versions, the table and the targets."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = {
    "polars": "polars",
    "polars_hash": "polars-hash",
    "duckdb": "duckdb",
    "deltalake": "deltalake",
    "pyarrow": "pyarrow",
    "narwhals": "narwhals",
    "mxd": "mxd-cli",
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20  # KiB -> GiB
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": None if ram is None else round(ram, 1),
        "cpu": cpu,
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def versions(repo: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for name, dist in PACKAGES.items():
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["mxd_git"] = _git(repo, "rev-parse", "--short", "HEAD")
    changed = _git(repo, "status", "--porcelain", "--", "src")
    found["mxd_src_uncommitted_changes"] = bool(changed)
    return found


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _median(summary: dict[str, Any], side: str, key: str = "seconds") -> float | None:
    value = summary.get(side, {}).get(key)
    return None if value is None else float(value["median"])


def targets(runs: list[dict[str, Any]], store: str) -> list[dict[str, Any]]:
    """Where each run stands against the issue's targets (medians)."""
    found: list[dict[str, Any]] = []

    def add(
        rows: int, name: str, goal: str, value: float | None, met: bool | None, **more: Any
    ) -> None:
        found.append(
            {"rows": rows, "target": name, "goal": goal, "value": value, "met": met, **more}
        )

    for run in runs:
        n = run["rows"]
        s = {p["phase"]: p["summary"] for p in run["phases"]}
        ratio = s.get("status_changed", {}).get("ratio")
        add(
            n,
            "status after a 1% change",
            "<= 1.5x floor",
            ratio,
            _le(ratio, 1.5),
            ratio_vs_full_floor=s.get("status_changed", {}).get("ratio_full"),
        )
        noop = _median(s.get("materialize_noop", {}), "mxd")
        add(
            n,
            "no-op materialize",
            "< 0.5 s",
            noop,
            _le(noop, 0.5, strict=True),
            total_seconds=_median(s.get("materialize_noop", {}), "mxd", "total_seconds"),
        )
        downstream = s.get("status_downstream")
        if downstream is not None:
            ratio = downstream.get("ratio")
            add(n, "downstream status, root written", "<= 2x floor", ratio, _le(ratio, 2.0))
            for name, peer in downstream.get("peers", {}).items():
                faster = None if not peer.get("mxd_ratio") else 1 / peer["mxd_ratio"]
                add(
                    n,
                    f"downstream vs {name}",
                    f">= 10x faster than {name}",
                    faster,
                    _ge(faster, 10),
                )
        first = _median(s.get("materialize_first", {}), "mxd")
        changed = _rerun(s, "mxd")
        share = None if first is None or changed is None else changed / first
        floor_first = _median(s.get("materialize_first", {}), "floor")
        floor_changed = _rerun(s, "floor")
        floor_share = (
            None if not floor_first or floor_changed is None else floor_changed / floor_first
        )
        add(n, "1% re-run vs first run", "<= 20%", share, _le(share, 0.2), floor_share=floor_share)
        memory = [
            (p["summary"].get("memory_ratio"), p["phase"])
            for p in run["phases"]
            if p["summary"].get("memory_ratio") is not None
        ]
        worst = max(memory) if memory else (None, None)
        add(
            n, "peak memory vs floor", "<= 1.5x", worst[0], _le(worst[0], 1.5), worst_phase=worst[1]
        )
        rate = s.get("write", {}).get("mxd_rows_per_second")
        add(
            n,
            f"{store} write rate",
            ">= 5M rows/s" if store == "duckdb" else "(target is DuckDB's)",
            rate,
            _ge(rate, 5e6) if store == "duckdb" else None,
            floor_rows_per_second=s.get("write", {}).get("floor_rows_per_second"),
        )
    noops = [(r["rows"], _median(_phase(r, "materialize_noop"), "mxd")) for r in runs]
    if len(noops) > 1 and all(v is not None for _, v in noops):
        growth = noops[-1][1] / noops[0][1] if noops[0][1] else None
        add(
            noops[-1][0],
            "no-op flat in N",
            f"same as at N={noops[0][0]:,}",
            growth,
            None if growth is None else growth < 1.5,
            by_rows=dict(noops),
        )
    return found


def _rerun(s: dict[str, dict[str, Any]], side: str) -> float | None:
    """The whole 1%-change re-run: the root's materialize (when run alone) plus the rest."""
    parts = [_median(s[p], side) for p in ("materialize_root", "materialize_changed") if p in s]
    return None if not parts or None in parts else sum(p for p in parts if p is not None)


def _phase(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next((p["summary"] for p in run["phases"] if p["phase"] == name), {})


def _le(value: float | None, limit: float, *, strict: bool = False) -> bool | None:
    if value is None:
        return None
    return value < limit if strict else value <= limit


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


# rendering
def _seconds(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "-"
    text = _num(spread["median"])
    if spread["max"] - spread["min"] > 0:
        text += f" ({_num(spread['min'])}–{_num(spread['max'])})"
    return text


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.5f}"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def _mib(spread: dict[str, float] | None) -> str:
    return "-" if spread is None else f"{spread['median']:,.0f}"


def peer_names(run: dict[str, Any]) -> list[str]:
    return sorted({name for p in run["phases"] for name in p["summary"].get("peers", {})})


def _peer_cells(summary: dict[str, Any], name: str) -> list[str]:
    """A peer's seconds, peak MiB and mxd / peer ratio; its state where it has no numbers;
    a dagger where the phase has no equivalent in the peer (see the notes)."""
    peer = summary.get("peers", {}).get(name)
    if peer is None:
        return ["-", "-", "-"]
    if peer["state"] != "ok":
        died = peer.get("failed_peak_mib")
        return [peer["state"], "-" if died is None else f"{died:,.0f}", "-"]
    mark = "†" if peer.get("note") else ""
    ratio = "-" if mark else _times(peer.get("mxd_ratio"))
    return [_seconds(peer.get("seconds")) + mark, _mib(peer.get("peak_mib")), ratio]


def table_rows(run: dict[str, Any]) -> list[list[str]]:
    names = peer_names(run)
    header = ["phase", "mxd s", "total s", "peak MiB"]
    for name in names:
        header += [f"{name} s", f"{name} MiB", f"mxd/{name}"]
    header += ["floor s", "floor MiB", "ratio", "mem ratio", "full-floor s", "ratio"]
    rows = [header]
    for p in run["phases"]:
        s = p["summary"]
        mxd, floor, full = s.get("mxd", {}), s.get("floor", {}), s.get("floor_full", {})
        state = s["state"]
        died = [
            r["mxd"]["process_peak_mib"]
            for r in p["repeats"]
            if r["mxd"]["state"] == "failed" and "process_peak_mib" in r["mxd"]
        ]
        row = [
            p["title"],
            _seconds(mxd.get("seconds")) if state == "ok" else state,
            _seconds(mxd.get("total_seconds")) if state == "ok" else "-",
            _mib(mxd.get("peak_mib")) if state == "ok" or not died else f"{max(died):,.0f}",
        ]
        for name in names:
            row += _peer_cells(s, name)
        row += [
            _seconds(floor.get("seconds")),
            _mib(floor.get("peak_mib")),
            _times(s.get("ratio")),
            _times(s.get("memory_ratio")),
            _seconds(full.get("seconds")) if full else "",
            _times(s.get("ratio_full")) if full else "",
        ]
        rows.append(row)
    return rows


def peer_notes(run: dict[str, Any]) -> list[str]:
    """Below a table: missing peers with the reason, phases without an equivalent."""
    notes: list[str] = []
    for name in peer_names(run):
        found = [(p["phase"], p["summary"]["peers"].get(name, {})) for p in run["phases"]]
        reasons: dict[tuple[str, str], list[str]] = {}
        for phase, s in found:
            if s.get("reason"):
                reasons.setdefault((s["state"], s["reason"]), []).append(phase)
        for (state, reason), phases in reasons.items():
            where = "" if state == "missing" else f" ({', '.join(phases)})"
            notes.append(f"{name}: {state.upper()}{where}: {reason}")
        notes += [f"† {phase} ({name}): {s['note']}" for phase, s in found if s.get("note")]
    return notes


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    h, m, v = doc["harness"], doc["machine"], doc["versions"]
    out = [
        f"mxd benchmark · store {h['store']} · chunk size {h['chunk_size']:,} · "
        f"{h['repeat']} repeat(s){' · PROFILED (timings inflated)' if h['profiled'] else ''}",
        f"{m['usable_cores']} cores, {m['ram_gib']} GiB, {m['cpu']} · python {v['python']}, "
        f"polars {v['polars']}, duckdb {v['duckdb']}, deltalake {v['deltalake']}, "
        f"mxd {v['mxd']} ({v['mxd_git']}{', src modified' if v['mxd_src_uncommitted_changes'] else ''})",
        "seconds: median (min–max) of the work inside the process; total: the whole process "
        "(interpreter start and imports too); ratio: mxd / floor; mxd/<peer>: mxd / the peer",
    ]
    for env in doc.get("peers", []):
        packages = env.get("packages") or {}
        shown = ", ".join(f"{k} {v}" for k, v in packages.items() if k != env["name"])
        state = f"MISSING: {env['missing']}" if env.get("missing") else shown
        out.append(f"peer {env['name']} {env['version']} ({state})")
    for run in doc["runs"]:
        edit = run.get("edit") or {}
        out += [
            "",
            f"N = {run['rows']:,} samples per root (edit: {edit.get('changed', 0):,} changed, "
            f"{edit.get('added', 0):,} added, {edit.get('removed', 0):,} removed)",
            _grid(table_rows(run)),
        ]
        write = next((p["summary"] for p in run["phases"] if p["phase"] == "write"), {})
        if write.get("mxd_rows_per_second"):
            out.append(
                f"store write of {write.get('rows', 0):,} clips rows "
                f"({write.get('bytes', 0) / 2**20:,.0f} MiB as Arrow): "
                f"mxd {write['mxd_rows_per_second'] / 1e6:.2f}M rows/s "
                f"({write.get('mxd_mib_per_second', 0):,.0f} MiB/s), floor (Parquet) "
                f"{write.get('floor_rows_per_second', 0) / 1e6:.2f}M rows/s "
                f"({write.get('floor_mib_per_second', 0):,.0f} MiB/s)"
                + "".join(
                    f", {name} {peer['rows_per_second'] / 1e6:.2f}M rows/s"
                    for name, peer in write.get("peers", {}).items()
                    if peer.get("rows_per_second")
                )
            )
        loads = sorted(
            side["load"]
            for p in run["phases"]
            for rep in p["repeats"]
            for side in [rep["mxd"], rep["floor"], *rep.get("peers", {}).values()]
            if side.get("load") is not None
        )
        if loads:
            out.append(
                f"load average (1 min) as each process started: median "
                f"{loads[len(loads) // 2]:.1f}, {loads[0]:.1f}–{loads[-1]:.1f} "
                f"on {doc['machine'].get('usable_cores')} cores"
            )
        out += [f"  {note}" for note in peer_notes(run)]
        for p in run["phases"]:
            for problem in p["summary"].get("disagreements", []):
                out.append(f"  ! {p['phase']}: {problem}")
            for peer in p["summary"].get("peers", {}).values():
                out += [f"  ! {p['phase']}: {problem}" for problem in peer["disagreements"]]
            for rep in p["repeats"]:
                sides = [("mxd", rep["mxd"]), *rep.get("peers", {}).items()]
                for who, side in sides:
                    if side["state"] == "failed":
                        tail = side.get("stderr", "")[-300:] or "(no output)"
                        code = side.get("exit")
                        out.append(f"  ! {p['phase']} failed ({who}, exit {code}): {tail}")
    if doc.get("targets"):
        out += ["", "targets (medians):"]
        for t in doc["targets"]:
            value = t["value"]
            shown = "-" if value is None else _target_value(t["target"], value)
            verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            out.append(
                f"  N={t['rows']:>10,}  {t['target']:<32} {t['goal']:<28} {shown:>12}  {verdict}"
            )
    return "\n".join(out)


def _target_value(name: str, value: float) -> str:
    if "rate" in name:
        return f"{value / 1e6:.2f}M/s"
    if "re-run" in name:
        return f"{value:.0%}"
    if "no-op materialize" in name:
        return f"{value:.3f} s"
    return _times(value)


def progress_line(n: int, rep: int, phase: Any, result: dict[str, Any]) -> str:
    mxd, floor = result["mxd"], result["floor"]
    parts = [f"N={n:,} rep {rep + 1} {phase.name}:"]
    for who, side in [("mxd", mxd), *result.get("peers", {}).items()]:
        if side["state"] != "ok":
            parts.append(f"{who} {side['state']},")
        else:
            parts.append(
                f"{who} {side['seconds']:.3f}s ({side['total_seconds']:.2f}s total, "
                f"{side['peak_mib']:.0f} MiB),"
            )
    parts.append(
        f"floor {floor.get('seconds', float('nan')):.3f}s ({floor.get('peak_mib', 0):.0f} MiB)"
    )
    return " ".join(parts)


def _median_only(cell: str) -> str:
    median = cell.split(" (")[0]
    return median + "†" if cell.endswith("†") and not median.endswith("†") else median


def markdown(doc: dict[str, Any]) -> str:
    """The tables as Markdown, medians only (for benchmarks/README.md)."""
    h, v = doc["harness"], doc["versions"]
    lines = []
    for run in doc["runs"]:
        lines += [
            f"**N = {run['rows']:,}, {h['store']}** ({h['repeat']} repeat(s); mxd {v['mxd_git']}, "
            f"polars {v['polars']}, duckdb {v['duckdb']}, deltalake {v['deltalake']})",
            "",
        ]
        rows = table_rows(run)
        rows = [[row[0]] + [_median_only(c) for c in row[1:]] for row in rows]
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|")
        lines += ["| " + " | ".join(c or " " for c in row) + " |" for row in rows[1:]]
        lines.append("")
        lines += [f"{note}  " for note in peer_notes(run)]
        if peer_notes(run):
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
