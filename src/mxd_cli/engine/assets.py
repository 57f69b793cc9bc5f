"""Calling assets and turning what they return into Polars frames.

Assets may return (or yield) Polars, pandas or Arrow frames; narwhals reads them all
(imported only when something other than Polars comes back: it costs ~50 ms at start).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import polars as pl

from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.errors import AssetError, MxdError


def to_polars(obj: Any, asset: AssetDefinition) -> pl.DataFrame:
    """One returned object as a Polars DataFrame (lazy frames are collected)."""
    if isinstance(obj, pl.DataFrame):
        return obj
    if isinstance(obj, pl.LazyFrame):
        return obj.collect()
    import narwhals as nw

    try:
        frame = nw.from_native(obj, eager_only=True)
    except TypeError:
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature} returned {type(obj).__name__}",
            hint="return a Polars, pandas or Arrow table (or yield several)",
            location=str(asset.origin),
        ) from None
    result = frame.to_polars()
    assert isinstance(result, pl.DataFrame)
    return result


def frames_of(result: Any, asset: AssetDefinition) -> list[pl.DataFrame]:
    """What an asset call produced: one frame, or every frame a generator yielded."""
    if result is None:
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature} returned None",
            hint="return the rows (an empty frame when there are none)",
            location=str(asset.origin),
        )
    if _is_table(result):
        return [to_polars(result, asset)]
    if isinstance(result, (Mapping, str, bytes)):
        kind = "a dict" if isinstance(result, Mapping) else type(result).__name__
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature} returned {kind}",
            hint="return a Polars, pandas or Arrow table (pl.DataFrame(...) of a dict of "
            "columns), or yield several",
            location=str(asset.origin),
        )
    if isinstance(result, Iterable):
        return [to_polars(part, asset) for part in result]
    return [to_polars(result, asset)]


def _is_table(obj: Any) -> bool:
    if isinstance(obj, (pl.DataFrame, pl.LazyFrame)):
        return True
    import narwhals as nw

    try:
        nw.from_native(obj, eager_only=True)
    except TypeError:
        return False
    return True


def call_raw(asset: AssetDefinition, ctx: AssetContext, *args: Any) -> Any:
    """Call an asset and return what it returned (anything it raises becomes an
    AssetError naming it; None is refused)."""
    with blamed_on(asset):
        result = asset.fn(ctx, *args)
    if result is None:
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature} returned None",
            hint="return the rows (an empty frame when there are none)",
            location=str(asset.origin),
        )
    return result


def call_asset(asset: AssetDefinition, ctx: AssetContext, *args: Any) -> list[pl.DataFrame]:
    """Call an asset; anything it raises (also while a generator asset yields) becomes an
    AssetError naming it."""
    with blamed_on(asset):
        return frames_of(asset.fn(ctx, *args), asset)


@contextmanager
def blamed_on(asset: AssetDefinition) -> Iterator[None]:
    """Turn what user code raises inside the block into an AssetError naming the asset."""
    try:
        yield
    except MxdError:
        raise
    except Exception as exc:
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature} raised {type(exc).__name__}: {exc}",
            location=str(asset.origin),
        ) from exc


def root_samples(asset: AssetDefinition, ctx: AssetContext) -> pl.DataFrame:
    """Every current sample of a root feature, as its asset returns them."""
    frames = call_asset(asset, ctx)
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
