"""The repo's copy of the golden vectors equals ``../shared/golden`` where that exists."""

from __future__ import annotations

import pytest

from tests.data.sync_golden import COPY, SOURCE, differences


def test_the_copy_holds_every_scenario_and_store() -> None:
    names = {p.name for p in (COPY / "scenarios").glob("*.json")}
    assert {"chain.json", "diamond.json", "lineage.json", "optional.json"} <= names
    assert (COPY / "stores" / "chain.duckdb").is_file()
    assert (COPY / "stores" / "chain_delta" / "demo" / "raw.delta" / "_delta_log").is_dir()


@pytest.mark.skipif(not SOURCE.is_dir(), reason="../shared/golden is not beside this clone")
def test_the_copy_equals_the_shared_vectors() -> None:
    assert differences() == [], "run python tests/data/sync_golden.py"
