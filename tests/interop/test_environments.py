"""The cached environments are used only when healthy (a broken one is built again)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.interop import environments as envs
from tests.interop.environments import READY, Environment, Recipe, _check


def fake_env(root: Path, *, ready: bool = True) -> Path:
    (root / "bin").mkdir(parents=True)
    # The base interpreter (a venv's python moved out of its venv sees no site-packages).
    (root / "bin" / "python").symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    if ready:
        (root / READY).write_text("{}")
    return root


def recipe(imports: dict[str, str], pins: dict[str, str]) -> Recipe:
    return Recipe("t", (), imports, pins, ())


def test_a_half_built_or_broken_environment_is_not_used(tmp_path: Path) -> None:
    ok = recipe({"pip": "pip"}, {})
    assert _check(ok, fake_env(tmp_path / "unfinished", ready=False)) is None
    assert _check(ok, tmp_path / "missing") is None
    missing_module = recipe({"no_such_module_here": "no-such-dist"}, {})
    assert _check(missing_module, fake_env(tmp_path / "broken")) is None
    wrong_pin = recipe({"pip": "pip"}, {"pip": "0.0.1"})
    assert _check(wrong_pin, fake_env(tmp_path / "pinned")) is None
    versions = _check(ok, fake_env(tmp_path / "healthy"))
    assert versions is not None and set(versions) == {"pip"}


def test_the_metaxy_environment_has_its_pins(metaxy_env: Environment) -> None:
    pins = envs.metaxy_recipe().pins
    assert pins["metaxy"] == "0.1.11" and pins["duckdb"] == "1.4.3"
    assert pins["sqlglot"] == "28.10.0"
    assert {k: metaxy_env.versions[k] for k in ("metaxy", "duckdb", "sqlglot")} == {
        k: pins[k] for k in ("metaxy", "duckdb", "sqlglot")
    }
