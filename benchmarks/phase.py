"""One benchmark phase in its own process, so its peak memory is its own.

    python benchmarks/phase.py --timing T.json [--profile P.prof] [--preload duckdb] mxd ARGS...
    python benchmarks/phase.py --timing T.json floor PHASE --data DIR --store DIR [--full]
    python benchmarks/phase.py --timing T.json write-mxd CONFIG PROBE_CONFIG
    python benchmarks/phase.py --timing T.json write-floor PART OUT

The timing file gets ``seconds`` (the work alone: after the libraries are imported, so
interpreter start and imports are not counted; the parent times the whole process too),
``imports`` (seconds spent importing), ``peak_mib`` (the process's peak RSS),
``baseline_mib`` (RSS after imports), ``exit`` and, for the floor, its ``result``. ``mxd``
runs the real command line in this process; its JSON goes to stdout as usual.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (after the clock starts)
import importlib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from timing import measure  # noqa: E402


def run_mxd(args: list[str]) -> tuple[int, Any]:
    from mxd_cli.cli import app

    try:
        app(args=args, prog_name="mxd")
    except SystemExit as exc:
        code = exc.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), None
    return 0, None


def run_floor(phase: str, data: str, store: str, full: bool) -> tuple[int, Any]:
    from floor import PHASES, Floor

    floor = Floor(Path(data), Path(store), full=full)
    return 0, PHASES[phase](floor)


def load_write_probe(config: str, probe: str) -> tuple[Callable[[], Any], int]:
    """mxd's own rows of ``bench/clips`` (read, not timed) and an append of them into a
    fresh table of the probe store (timed)."""
    from mxd_cli import api
    from mxd_cli.store import open_store

    project = api.Project.load(Path(config))
    with open_store(project.config.store_config(None), read_only=True) as source:
        scanned = source.scan(("bench", "clips"))
        assert scanned is not None, "bench/clips is not in the store"
        frame = scanned.collect()
    target = open_store(api.Project.load(Path(probe)).config.store_config(None))

    def write() -> Any:
        target.append(("bench", "write_probe"), frame)
        target.close()
        return {"rows": frame.height, "bytes": frame.estimated_size()}

    return write, frame.height


def load_floor_write(part: str, out: str) -> tuple[Callable[[], Any], int]:
    import polars as pl
    from floor import WRITE_OPTIONS

    frame = pl.read_parquet(part)

    def write() -> Any:
        frame.write_parquet(out, **WRITE_OPTIONS)
        return {"rows": frame.height, "bytes": frame.estimated_size()}

    return write, frame.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", required=True)
    parser.add_argument("--profile")
    parser.add_argument("--preload", action="append", default=[])
    parser.add_argument("kind", choices=["mxd", "floor", "write-mxd", "write-floor"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    opts = parser.parse_args()

    for module in ["polars", "polars_hash", "pyarrow", *opts.preload]:
        importlib.import_module(module)
    if opts.kind in ("mxd", "write-mxd"):
        importlib.import_module("mxd_cli.cli")
    else:
        importlib.import_module("floor")

    work: Callable[[], tuple[int, Any]]
    rest = opts.rest
    if opts.kind == "mxd":

        def work() -> tuple[int, Any]:
            return run_mxd(rest)

    elif opts.kind == "floor":
        sub = argparse.ArgumentParser(prog="phase.py floor")
        sub.add_argument("phase")
        sub.add_argument("--data", required=True)
        sub.add_argument("--store", required=True)
        sub.add_argument("--full", action="store_true")
        f = sub.parse_args(rest)

        def work() -> tuple[int, Any]:
            return run_floor(f.phase, f.data, f.store, f.full)

    else:
        loader = load_write_probe if opts.kind == "write-mxd" else load_floor_write
        write, _ = loader(*rest)

        def work() -> tuple[int, Any]:
            return 0, write()

    measure(work, started=STARTED, timing=opts.timing, profile=opts.profile)


if __name__ == "__main__":
    main()
