"""Hand-made cases (``hand_made.py``) on both backends, the stores handed over each step.

The diamond also runs under every hash algorithm the backend's Metaxy store accepts
(xxhash32 with truncation lengths 8, 12 and 64 on Delta; on DuckDB md5, the one its SQL
computes with no stand-in, in the CI form and the others behind ``slow``; the random
cases draw algorithms and lengths on both backends too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.interop.conftest import tally
from tests.interop.differential import run_case
from tests.interop.hand_made import HAND_MADE, diamond
from tests.interop.metaxy_process import MetaxyProcess
from tests.interop.random_cases import SUPPORTED

BACKENDS = ("delta", "duckdb")


# DuckDB runs several times slower (both tools): in the CI form it runs the cases where
# Metaxy's SQL engine does most (joins, lineage, data versions); the rest behind `slow`.
DUCKDB_CI = {"aggregation", "aggregation_without_on", "diamond", "early_cutoff", "expansion"}
CASES = [
    pytest.param(
        backend, name, marks=[] if backend == "delta" or name in DUCKDB_CI else [pytest.mark.slow]
    )
    for backend in BACKENDS
    for name in sorted(HAND_MADE)
]


@pytest.mark.parametrize(("backend", "name"), CASES)
def test_hand_made_case(backend: str, name: str, metaxy: MetaxyProcess, tmp_path: Path) -> None:
    case = HAND_MADE[name]()
    if case.algorithm not in SUPPORTED[backend]:
        case = replace(case, algorithm=SUPPORTED[backend][-1])
    run_case(case, backend, tmp_path, metaxy, tally(backend))


HASHINGS = [
    pytest.param(
        backend,
        algorithm,
        length,
        marks=[pytest.mark.slow] if backend == "duckdb" and algorithm != "md5" else [],
    )
    for backend in BACKENDS
    for algorithm in SUPPORTED[backend]
    for length in ((8, 12, 64) if algorithm == "xxhash32" and backend == "delta" else (8,))
]


@pytest.mark.parametrize(("backend", "algorithm", "length"), HASHINGS)
def test_every_hash_setting(
    backend: str, algorithm: str, length: int, metaxy: MetaxyProcess, tmp_path: Path
) -> None:
    run_case(diamond(algorithm, length), backend, tmp_path, metaxy, tally(backend))
