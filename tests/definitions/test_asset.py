from __future__ import annotations

import pytest

import mxd_cli as mx
from mxd_cli.definitions import FeatureKey, Registry, collecting
from mxd_cli.errors import DefinitionError


def test_asset_registers_and_returns_the_function() -> None:
    registry = Registry()
    with collecting(registry):

        def fn(ctx: mx.AssetContext) -> None:
            return None

        assert mx.asset("t/raw", chunk_size=10)(fn) is fn
    asset = registry.assets[FeatureKey.parse("t/raw")]
    assert (asset.fn, asset.chunk_size, asset.arity) == (fn, 10, 1)


def test_asset_arity_and_chunk_size_are_checked() -> None:
    with collecting(Registry()):
        with pytest.raises(DefinitionError, match="takes 3 positional arguments"):
            mx.asset("t/raw")(lambda a, b, c: None)
        with pytest.raises(DefinitionError, match="chunk_size must be a positive integer"):
            mx.asset("t/raw", chunk_size=0)


def test_two_assets_for_one_feature() -> None:
    with collecting(Registry()):
        mx.asset("t/raw")(lambda ctx: None)
        with pytest.raises(DefinitionError, match="has two assets"):
            mx.asset("t/raw")(lambda ctx: None)
