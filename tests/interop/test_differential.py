"""Random graphs and edits, run by Metaxy 0.1.11 and mxd with the stores handed over.

Each case is drawn from a fixed seed (``random_cases.draw_case``); see ``differential.py``
for what one step compares. The CI form draws 24 small cases per backend (Delta: at most
4 features and 3 edits; DuckDB, several times slower on both sides: at most 3 and 2); the
``slow`` form draws as large as the property tests do (6 features, 4 edits), from other
seeds. ``MXD_INTEROP_SCALE=4`` draws four times as many of each (a longer hunt for
divergences; the seeds already run stay the same). Rerun one case with
``-k "delta and seed17"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.interop.conftest import tally
from tests.interop.differential import run_case
from tests.interop.metaxy_process import MetaxyProcess
from tests.interop.random_cases import FULL, SMALL, TINY, draw_case, seeds

BACKENDS = ("delta", "duckdb")
SCALE = max(1, int(os.environ.get("MXD_INTEROP_SCALE", "1")))
CI_SEEDS = seeds(24 * SCALE)
CI_SIZE = {"delta": SMALL, "duckdb": TINY}
SLOW_SEEDS = {"delta": seeds(16 * SCALE, start=1000), "duckdb": seeds(6 * SCALE, start=1000)}


@pytest.mark.parametrize("seed", CI_SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_case(backend: str, seed: int, metaxy: MetaxyProcess, tmp_path: Path) -> None:
    case = draw_case(seed, backend, CI_SIZE[backend])
    run_case(case, backend, tmp_path, metaxy, tally(backend))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "seed"),
    [(b, s) for b in BACKENDS for s in SLOW_SEEDS[b]],
    ids=lambda v: f"seed{v}" if isinstance(v, int) else v,
)
def test_random_case_full_size(
    backend: str, seed: int, metaxy: MetaxyProcess, tmp_path: Path
) -> None:
    run_case(draw_case(seed, backend, FULL), backend, tmp_path, metaxy, tally(backend))


def test_seeds_draw_the_same_case_every_time() -> None:
    first, again = draw_case(7, "delta"), draw_case(7, "delta")
    assert first.describe() == again.describe()
    assert draw_case(8, "delta").describe() != first.describe()


def test_drawn_cases_cover_what_the_generators_promise() -> None:
    """Across the CI seeds: renames, selects, filters, optional deps, field deps, edits."""
    seen: set[str] = set()
    for seed in CI_SEEDS:
        case = draw_case(seed, "delta")
        for step in case.steps:
            seen |= {type(d).__name__ for d in step.deletions}
            for spec in step.specs:
                for dep in spec.deps:
                    seen |= {k for k in ("rename", "select", "filters") if getattr(dep, k)}
                    seen |= {"optional"} if dep.optional else set()
                for field in spec.fields:
                    seen |= {"field deps"} if field.deps else set()
        seen |= {step.label.split("(")[-1].rstrip(")") for step in case.steps[1:]}
        seen |= {f"algorithm {case.algorithm}", f"length {case.length}"}
    wanted = {
        "rename", "select", "filters", "optional", "field deps", "Deletion",
        "AddSamples", "ChangeProvenance", "RemoveSamples", "FlipCodeVersion", "SoftDelete",
        "algorithm xxhash32", "algorithm md5", "length 8", "length 64",
    }  # fmt: skip
    assert wanted <= seen, sorted(wanted - seen)
