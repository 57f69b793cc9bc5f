from __future__ import annotations

from mxd_cli.errors import AssetError, ConfigError, MxdError, StoreError, did_you_mean


def test_codes_exit_codes_and_location() -> None:
    err = ConfigError("bad key", hint="fix it", location="metaxy.toml:3:1")
    assert isinstance(err, MxdError)
    assert (err.code, err.exit_code, str(err)) == ("config_error", 2, "metaxy.toml:3:1: bad key")
    assert StoreError("x").exit_code == AssetError("x").exit_code == 1


def test_did_you_mean() -> None:
    assert did_you_mean("stroe", ["store", "stores", "project"]) == "did you mean 'store'?"
    assert did_you_mean("zzz", ["store"]) is None
