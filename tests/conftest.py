from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

HEADER = "import polars as pl\nimport mxd_cli as mx\n"


def write_project(
    root: Path,
    pipeline: str,
    *,
    config: str | None = None,
    module: str = "pipeline",
) -> Path:
    """A tiny project in ``root``: metaxy.toml plus one module of definitions."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(HEADER + textwrap.dedent(pipeline))
    (root / "metaxy.toml").write_text(
        textwrap.dedent(
            config
            or f"""\
            project = "t"
            entrypoints = ["{module}"]
            [stores.dev]
            type = "duckdb"
            [stores.dev.config]
            database = ".mxd/dev.duckdb"
            """
        )
    )
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    def make(pipeline: str, **kwargs: object) -> Path:
        return write_project(tmp_path / "proj", pipeline, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """A private copy of examples/quickstart (its store lives inside the copy)."""
    dest = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", dest, ignore=shutil.ignore_patterns(".mxd"))
    return dest


CHAIN = """
class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Raw)],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, every Spark test goes to one worker: one JVM for the run (a
    second local Spark session on this machine's two cores would only compete). Tests
    that name a group of their own keep it (the Spark Connect tests: their server is a
    JVM of its own, and their commands run in processes of their own)."""
    for item in items:
        if item.get_closest_marker("spark") is None:
            continue
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("spark"))
