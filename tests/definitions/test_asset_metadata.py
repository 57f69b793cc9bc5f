"""``ctx.add_metadata``: checked values, recorded per feature in the run history and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey
from tests.cli.test_definitions import mxd
from tests.conftest import CHAIN


def context() -> mx.AssetContext:
    return mx.AssetContext(FeatureKey.parse("t/raw"), run_id="r", project_dir=Path())


def test_values_are_checked_and_copied() -> None:
    ctx = context()
    classes = {"a": [1, 2], "b": None}
    ctx.add_metadata(model="v3", accuracy=0.5, rows=3, ok=True, nothing=None, classes=classes)
    classes["a"].append(3)  # a later change by the asset does not leak into the record
    ctx.add_metadata(rows=4, pair=(1, "x"))
    assert ctx.metadata == {
        "model": "v3", "accuracy": 0.5, "rows": 4, "ok": True, "nothing": None,
        "classes": {"a": [1, 2], "b": None}, "pair": [1, "x"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (object(), TypeError, "object is not a metadata value"),
        ({1, 2}, TypeError, "set is not a metadata value"),
        ({"when": Path("x")}, TypeError, "not JSON-able"),
        (float("nan"), ValueError, "not a finite number"),
        ([float("inf")], TypeError, "not JSON-able"),
        (["x" * 10_000], ValueError, "more than 10,000"),
    ],
)
def test_bad_values_name_the_key_and_the_feature(
    value: object, error: type[Exception], match: str
) -> None:
    ctx = context()
    with pytest.raises(error, match=match) as info:
        ctx.add_metadata(bad=value)
    assert "ctx.add_metadata(bad=...) in the asset of t/raw" in str(info.value)
    assert ctx.metadata == {}


PIPELINE = (
    CHAIN
    + """
@mx.asset(Raw)
def raw(ctx):
    ctx.add_metadata(source="inline", rows=3)
    return pl.DataFrame({"id": [1, 2, 3], "value": ["A", "B", "C"]})

@mx.asset(Clean, chunk_size=2)
def clean(ctx, rows):
    ctx.add_metadata(last_chunk=rows.height, counts=dict(ctx.counts))
    return rows.with_columns(pl.col("value").str.to_lowercase())
"""
)


def test_recorded_in_materialize_json_and_run_history(make_project: Callable[..., Path]) -> None:
    root = make_project(PIPELINE)
    run = mxd("materialize", "--json", cwd=root)
    assert run.exit_code == 0, run.output
    report = {f["feature"]: f["metadata"] for f in json.loads(run.stdout)["features"]}
    counts = {"new": 3, "stale": 0, "orphaned": 0, "unchanged": 0}
    assert report == {
        "demo/raw": {"source": "inline", "rows": 3},
        "demo/clean": {"last_chunk": 1, "counts": counts},  # chunks of 2, 1: the last wins
    }
    history = mxd("runs", "--json", cwd=root)
    (recorded,) = json.loads(history.stdout)["runs"]
    assert {f["feature"]: f["metadata"] for f in recorded["features"]} == report


def test_bad_value_fails_the_asset_with_its_name(make_project: Callable[..., Path]) -> None:
    root = make_project(PIPELINE.replace('source="inline"', "source=object()"))
    run = mxd("materialize", "--json", cwd=root)
    assert run.exit_code == 1
    raw = json.loads(run.stdout)["features"][0]
    assert raw["status"] == "failed"
    assert "asset 'raw' of demo/raw raised TypeError: ctx.add_metadata(source=...)" in raw["error"]
