"""How a benchmark process measures its own work: the timing file every phase writes.

Used by ``phase.py`` (mxd and the floor) and by the peers' runners (in their own virtual
environments), so every side is measured the same way: ``seconds`` is the work alone
(after the imports), ``imports`` the time from the process's clock start to the work,
``peak_mib`` the process's peak RSS, ``baseline_mib`` the RSS after the imports.
"""

from __future__ import annotations

import cProfile
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(
    work: Callable[[], tuple[int, Any]], *, started: float, timing: str, profile: str | None = None
) -> None:
    """Run ``work`` (returning an exit code and a JSON-able result) and write the timing file."""
    imported = time.perf_counter()
    baseline = peak_mib()
    profiler = cProfile.Profile() if profile else None
    begun = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        code, result = work()
    finally:
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - begun
    if profiler is not None:
        profiler.dump_stats(profile)
    sys.stdout.flush()
    out = {
        "seconds": seconds,
        "imports": imported - started,
        "peak_mib": peak_mib(),
        "baseline_mib": baseline,
        "exit": code,
        "result": result,
    }
    Path(timing).write_text(json.dumps(out, default=str))
