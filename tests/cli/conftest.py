"""Fixtures of the CLI tests: a written quickstart per backend, cloned for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import populated
from tests.populated import BACKENDS, clone


@pytest.fixture(scope="module", params=BACKENDS)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return populated.template(tmp_path_factory, request.param)


@pytest.fixture
def qs(template: Path, tmp_path: Path) -> Path:
    return clone(template, tmp_path / "qs")
