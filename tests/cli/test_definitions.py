"""`mxd list`, `mxd graph`, `mxd check` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mxd_cli.cli import app
from tests.conftest import CHAIN

runner = CliRunner()


def mxd(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import os

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, list(args), env={"COLUMNS": "120", **(env or {})})
    finally:
        os.chdir(old)


def test_list_json_on_quickstart(quickstart: Path) -> None:
    result = mxd("list", "--json", cwd=quickstart)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [f["feature"] for f in data["features"]] == [
        "shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking",
    ]  # fmt: skip
    pricing = data["features"][2]
    assert pricing["id_columns"] == ["product_id"]
    assert pricing["deps"] == ["shop/products", "shop/reviews"]
    assert pricing["fields"] == [
        {
            "field": "value_score",
            "code_version": "1",
            "version": pricing["fields"][0]["version"],
            "deps": ["shop/products.price", "shop/reviews.rating"],
        }
    ]
    assert len(pricing["feature_version"]) == 8
    text_stats = data["features"][3]
    assert [f["deps"] for f in text_stats["fields"]] == [
        ["shop/products.description", "shop/products.title"],
        ["shop/products.title"],
    ]
    assert all(f["has_asset"] for f in data["features"])


def test_global_options_work_before_and_after_the_command(quickstart: Path) -> None:
    before = mxd("--json", "list", cwd=quickstart)
    after = mxd("list", "--json", cwd=quickstart)
    assert before.exit_code == after.exit_code == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    config = str(quickstart / "metaxy.toml")
    assert mxd("list", "stores", "--json", "-c", config).exit_code == 0


def test_list_selection_and_stores(quickstart: Path) -> None:
    result = mxd("list", "--select", "+shop/pricing", "--json", cwd=quickstart)
    assert [f["feature"] for f in json.loads(result.stdout)["features"]] == [
        "shop/products", "shop/reviews", "shop/pricing",
    ]  # fmt: skip
    stores = json.loads(mxd("list", "stores", "--json", cwd=quickstart).stdout)["stores"]
    assert [(s["name"], s["type"], s["default"]) for s in stores] == [
        ("dev", "duckdb", True),
        ("branch", "duckdb", False),
        ("spark", "spark", False),
    ]
    assert stores[0]["options"]["database"] == str(quickstart / ".mxd" / "dev.duckdb")
    assert stores[1]["fallback_stores"] == ["dev"]


def test_graph_formats(quickstart: Path) -> None:
    mermaid = mxd("graph", "--format", "mermaid", cwd=quickstart)
    assert mermaid.exit_code == 0
    lines = mermaid.stdout.splitlines()
    assert lines[0] == "graph TD"
    assert "    shop__products --> shop__pricing" in lines
    assert "    shop__pricing --> shop__ranking" in lines
    dot = mxd("graph", "--format", "dot", "shop/pricing+", cwd=quickstart).stdout
    assert '"shop/pricing" -> "shop/ranking";' in dot
    assert "shop/products" not in dot
    tree = mxd("graph", cwd=quickstart).stdout
    assert tree.splitlines()[0] == "shop/products  [title, description, price]"
    edges = json.loads(mxd("graph", "--json", cwd=quickstart).stdout)["edges"]
    assert {"from": "shop/text_stats", "to": "shop/ranking"} in edges
    assert len(edges) == 5


def test_check_ok(quickstart: Path) -> None:
    result = mxd("check", "--json", cwd=quickstart)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["ok"], report["features"], report["assets"]) == (True, 5, 5)
    assert mxd("check", cwd=quickstart).exit_code == 0


def test_user_prints_stay_off_stdout(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project('print("hello from the module")\n' + CHAIN)
    result = mxd("list", "--json", cwd=root)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["features"][0]["feature"] == "demo/raw"
    assert "hello from the module" in result.stderr


def _error(result) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert result.exit_code == 2, result.output
    data: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    assert set(data) == {"error", "message", "hint"}
    return data


def test_unknown_config_key(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN, config='project = "t"\nentrypoints = ["pipeline"]\nstroe = "dev"\n')
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "config_error"
    assert "stroe" in data["message"] and "metaxy.toml" in data["message"]
    assert data["hint"] == "did you mean 'store'?"


def test_bad_toml(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN, config='project = "t"\nentrypoints = ["pipeline"]\nstore = dev\n')
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "config_error"
    assert f"{root / 'metaxy.toml'}:3:9" in data["message"]


def test_missing_entrypoint_module(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN, config='project = "t"\nentrypoints = ["pipelines"]\n')
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "definition_error"
    assert "entrypoint module 'pipelines' not found" in data["message"]


def test_syntax_error_in_user_module(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN + "\ndef broken(:\n    pass\n")
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "definition_error"
    assert "syntax error in module 'pipeline'" in data["message"]
    line = (HEADER_LINES := 2) + CHAIN.count("\n") + 2
    assert f"{root / 'pipeline.py'}:{line}" in data["message"], (data, HEADER_LINES)


def test_exception_in_user_module_points_at_its_line(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project("x = 1\nraise RuntimeError('boom')\n")
    data = _error(mxd("check", "--json", cwd=root))
    assert "RuntimeError: boom" in data["message"]
    assert data["message"].startswith(f"{root / 'pipeline.py'}:4")


def test_cycle(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(
        """
        mx.FeatureSpec  # keep the import used
        class A(mx.BaseFeature, spec=mx.FeatureSpec(key="c/a", id_columns=["id"], deps=["c/b"])):
            pass
        class B(mx.BaseFeature, spec=mx.FeatureSpec(key="c/b", id_columns=["id"], deps=["c/a"])):
            pass
        """
    )
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "definition_error"
    assert "dependency cycle: c/a -> c/b -> c/a" in data["message"]


def test_duplicate_key(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN + CHAIN.replace("demo/clean", "demo/other").replace("Raw", "Raw2", 1))
    data = _error(mxd("check", "--json", cwd=root))
    assert "feature key demo/raw is declared twice" in data["message"]
    assert data["message"].count("pipeline.py") >= 2


def test_unknown_upstream_key(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN.replace("feature=Raw", 'feature="demo/rwa"'))
    data = _error(mxd("check", "--json", cwd=root))
    assert "demo/clean depends on unknown feature demo/rwa" in data["message"]
    assert data["hint"] == "did you mean 'demo/raw'?"


def test_unknown_store_type(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(
        CHAIN,
        config='project = "t"\nentrypoints = ["pipeline"]\nstore = "dev"\n'
        '[stores.dev]\ntype = "duckbd"\n',
    )
    data = _error(mxd("check", "--json", cwd=root))
    assert data["error"] == "config_error"
    assert "unknown store type 'duckbd'" in data["message"]
    assert "duckdb" in data["hint"]


def test_asset_for_unknown_feature_and_wrong_signature(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(
        CHAIN + "\n@mx.asset('demo/clen')\ndef clean(ctx, rows):\n    return rows\n"
    )
    data = _error(mxd("check", "--json", cwd=root))
    assert "bound to unknown feature demo/clen" in data["message"]
    root = make_project(CHAIN + "\n@mx.asset(Raw)\ndef raw(ctx, rows):\n    return rows\n")
    data = _error(mxd("check", "--json", cwd=root))
    assert "of root feature demo/raw must take (ctx)" in data["message"]


def test_unknown_selector_is_a_usage_error(quickstart: Path) -> None:
    data = _error(mxd("graph", "shop/pricng", "--json", cwd=quickstart))
    assert data == {
        "error": "usage_error",
        "message": "unknown feature 'shop/pricng'",
        "hint": "did you mean 'shop/pricing'?",
    }


def test_human_error_goes_to_stderr(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN.replace("feature=Raw", 'feature="demo/rwa"'))
    result = mxd("check", cwd=root)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error:" in result.stderr and "Hint: did you mean 'demo/raw'?" in result.stderr


@pytest.mark.parametrize("command", ["list", "graph", "check"])
def test_help_shows_an_example(command: str) -> None:
    result = mxd(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout


def test_version() -> None:
    result = mxd("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("mxd ")
