"""Asset outputs in every frame flavour, and asset failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.definitions.asset import AssetDefinition
from mxd_cli.engine.assets import call_asset, root_samples
from mxd_cli.engine.roots import frames
from mxd_cli.errors import AssetError

KEY = FeatureKey.parse("t/raw")


def asset_of(fn: Any) -> AssetDefinition:
    registry = Registry()
    with collecting(registry):
        mx.asset(KEY)(fn)
    definition: AssetDefinition = registry.assets[KEY]
    return definition


def ctx() -> mx.AssetContext:
    return mx.AssetContext(KEY, run_id="r", project_dir=Path("."))


@pytest.mark.parametrize(
    "make",
    [
        lambda: pl.DataFrame({"id": ["a", "b"], "x": [1, 2]}),
        lambda: pl.DataFrame({"id": ["a", "b"], "x": [1, 2]}).lazy(),
        lambda: pd.DataFrame({"id": ["a", "b"], "x": [1, 2]}),
        lambda: pa.table({"id": ["a", "b"], "x": [1, 2]}),
    ],
    ids=["polars", "lazy", "pandas", "arrow"],
)
def test_any_frame_flavour(make: Any) -> None:
    frame = root_samples(asset_of(lambda ctx: make()), ctx())
    assert frame.to_dict(as_series=False) == {"id": ["a", "b"], "x": [1, 2]}


def test_generators_yield_several_frames() -> None:
    def gen(ctx: mx.AssetContext) -> Any:
        yield pl.DataFrame({"id": ["a"], "x": [1]})
        yield pd.DataFrame({"id": ["b"], "x": [2]})

    assert root_samples(asset_of(gen), ctx())["id"].to_list() == ["a", "b"]


def test_bad_outputs_and_exceptions_name_the_asset() -> None:
    with pytest.raises(AssetError, match="returned None"):
        call_asset(asset_of(lambda ctx: None), ctx())
    with pytest.raises(AssetError, match="returned int") as info:
        call_asset(asset_of(lambda ctx: 3), ctx())
    assert info.value.hint is not None and "Polars, pandas or Arrow" in info.value.hint

    def boom(ctx: mx.AssetContext) -> pl.DataFrame:
        raise KeyError("column")

    with pytest.raises(
        AssetError, match=r"asset 'test_bad_outputs.*boom' of t/raw raised KeyError"
    ):
        call_asset(asset_of(boom), ctx())


def test_a_lazy_root_is_streamed_whatever_engine_the_process_prefers(tmp_path: Path) -> None:
    """A root asset's lazy frame is read in batches even where Polars is told to prefer
    its in-memory engine (which collected it whole first: 1.7 GB for 10M captions)."""
    path = tmp_path / "rows.parquet"
    n = 200_000
    pl.DataFrame({"id": [f"s{i}" for i in range(n)], "x": range(n)}).write_parquet(
        path, row_group_size=20_000
    )
    seen: list[int] = []

    def note(frame: pl.DataFrame) -> pl.DataFrame:
        seen.append(frame.height)
        return frame

    lazy = pl.scan_parquet(path).map_batches(note, streamable=True)
    with pl.Config(engine_affinity="in-memory"):
        heights = [f.height for f in frames(lazy, asset_of(lambda ctx: lazy), batch_rows=50_000)]
    assert sum(heights) == n and max(heights) <= 50_000
    assert len(seen) > 1 and max(seen) < n  # (never the whole frame at once)
