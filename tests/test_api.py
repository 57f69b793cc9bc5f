from __future__ import annotations

from pathlib import Path

import pytest

from mxd_cli import api
from mxd_cli.errors import DefinitionError
from tests.conftest import CHAIN


def test_project_load_and_listing(quickstart: Path) -> None:
    project = api.Project.load(cwd=quickstart)
    assert project.config.project == "quickstart"
    listing = api.list_features(project, ["shop/products"])
    assert [f["feature"] for f in listing["features"]] == ["shop/products"]
    products = listing["features"][0]
    assert [f["field"] for f in products["fields"]] == ["title", "description", "price"]
    assert products["feature_version"] == project.versions.feature_version(project.graph.order[0])
    report = api.check(project)
    assert (report["features"], report["assets"], report["warnings"]) == (5, 5, [])


def test_loading_twice_in_one_process_gives_fresh_definitions(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN)
    first = api.Project.load(cwd=root)
    (root / "pipeline.py").write_text(
        (root / "pipeline.py")
        .read_text()
        .replace(
            'key="value", code_version="1")])):\n    pass\n\nclass Clean',
            'key="value", code_version="2")])):\n    pass\n\nclass Clean',
        )
    )
    second = api.Project.load(cwd=root)
    key = first.graph.order[0]
    assert first.versions.feature_version(key) != second.versions.feature_version(key)


def test_feature_without_asset_is_a_warning(make_project) -> None:  # type: ignore[no-untyped-def]
    project = api.Project.load(cwd=make_project(CHAIN))
    assert api.check(project)["warnings"] == [
        "feature demo/raw has no asset (it can be observed, not materialized)",
        "feature demo/clean has no asset (it can be observed, not materialized)",
    ]


def test_entrypoint_given_as_a_path(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(CHAIN, config='project = "t"\nentrypoints = ["pipeline.py"]\n')
    with pytest.raises(DefinitionError, match="is a path, not a module name") as info:
        api.Project.load(cwd=root)
    assert info.value.hint == "write it as a module name, e.g. 'pipeline'"
