"""`mxd observe` through the real command on both backends: shape, recording, --exit-code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.pipeline_runner import run_step
from tests.populated import BACKENDS, fresh_quickstart

FEATURES = ["shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking"]


def observe_json(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = mxd("observe", "--json", *args, cwd=root)
    return result.exit_code, json.loads(result.stdout)


def test_json_shape(qs: Path) -> None:
    code, report = observe_json(qs)
    assert code == 0
    assert [f["feature"] for f in report["features"]] == FEATURES
    products = report["features"][0]
    assert set(products) >= {
        "feature", "rows", "data_version", "last_written_at", "changed", "behind",
        "fingerprint", "changed_basis",
    }  # fmt: skip
    assert (products["rows"], products["changed"], products["changed_basis"]) == (
        8,
        True,
        "fingerprint",
    )
    assert products["behind"] == {"new": 0, "stale": 0, "orphaned": 0}
    assert products["data_version"] == products["last_written_at"]  # one write, one instant
    assert len(products["fingerprint"]) == 32
    assert report["recorded"] is True


def test_exit_code_0_when_nothing_changed_since_the_last_observation(qs: Path) -> None:
    assert mxd("observe", "--exit-code", cwd=qs).exit_code == 3  # first look at the data
    code, report = observe_json(qs, "--exit-code")
    assert code == 0
    assert not any(f["changed"] for f in report["features"])
    assert mxd("observe", "--exit-code", "shop/pricing", cwd=qs).exit_code == 0


def test_exit_code_3_after_a_change(qs: Path) -> None:
    observe_json(qs)
    csv = qs / "data" / "products.csv"
    csv.write_text(csv.read_text().replace("Headlamp,", "Head Torch,"))
    # The source changed but nothing was written: the store did not change, roots lag.
    code, report = observe_json(qs, "--exit-code")
    assert code == 0
    assert report["features"][0]["behind"] == {"new": 0, "stale": 1, "orphaned": 0}
    run_step(api.Project.load(cwd=qs))
    code, report = observe_json(qs, "--exit-code")
    assert code == 3
    changed = [f["feature"] for f in report["features"] if f["changed"]]
    # The title feeds products, text_stats and (through text_stats) ranking; not pricing.
    assert changed == ["shop/products", "shop/text_stats", "shop/ranking"]
    assert report["features"][0]["rows"] == 8


def test_exit_code_3_after_a_delete(qs: Path) -> None:
    observe_json(qs)
    assert mxd("delete", "shop/reviews", "--filter", "rating < 4.0", cwd=qs).exit_code == 0
    code, report = observe_json(qs, "shop/reviews", "--exit-code")
    assert code == 3
    assert report["features"][0]["rows"] == 6


def test_table_output(qs: Path) -> None:
    result = mxd("observe", cwd=qs)
    assert result.exit_code == 0
    assert all(f in result.stdout for f in FEATURES)
    assert "Observed 5 feature(s): 5 changed since the last observation." in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unwritten_store_is_observed_empty(tmp_path: Path, backend: str) -> None:
    root = fresh_quickstart(tmp_path / "qs", backend)
    code, report = observe_json(root, "--exit-code")
    assert code == 0
    assert [(f["rows"], f["data_version"], f["changed"]) for f in report["features"]] == [
        (0, "empty", False)
    ] * 5
    assert report["features"][0]["behind"] == {"new": 8, "stale": 0, "orphaned": 0}
    assert report["features"][0]["last_written_at"] is None
