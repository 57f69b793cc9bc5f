"""Quickstart copies on either backend, written once per module and cloned per test.

Writing the quickstart's five features takes most of a second; cloning the written store
takes milliseconds, so tests that only need "a populated store" clone a template (one per
backend and test session).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from mxd_cli import api
from tests.conftest import EXAMPLES
from tests.pipeline_runner import run_step

BACKENDS = ["duckdb", "delta"]


def fresh_quickstart(dest: Path, backend: str) -> Path:
    """A copy of examples/quickstart at ``dest`` whose stores (``dev``, and ``branch`` over
    it) use ``backend`` (not written)."""
    shutil.copytree(EXAMPLES / "quickstart", dest, ignore=shutil.ignore_patterns(".mxd"))
    if backend == "delta":
        on_delta(dest)
    return dest


def on_delta(root: Path) -> None:
    """Turn the quickstart copy at ``root`` to Delta stores (``dev`` and ``branch``)."""
    config = root / "metaxy.toml"
    config.write_text(
        config.read_text()
        .replace('type = "duckdb"', 'type = "delta"')
        .replace('database = ".mxd/dev.duckdb"', 'root_path = ".mxd/delta"')
        .replace('database = ".mxd/branch.duckdb"', 'root_path = ".mxd/branch-delta"')
    )


def written_quickstart(dest: Path, backend: str) -> Path:
    """A quickstart copy with every feature written once (8 samples each)."""
    fresh_quickstart(dest, backend)
    run_step(api.Project.load(cwd=dest))
    return dest


_TEMPLATES: dict[str, Path] = {}


def template(factory: pytest.TempPathFactory, backend: str) -> Path:
    """A written quickstart on ``backend``, built once per test session; clone it, never
    write to it."""
    if backend not in _TEMPLATES:
        _TEMPLATES[backend] = written_quickstart(
            factory.mktemp(f"template-{backend}") / "qs", backend
        )
    return _TEMPLATES[backend]


def clone(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256: equal digests mean byte-for-byte equal."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
