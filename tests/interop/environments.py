"""The virtual environments the interop tests run Metaxy in, built once and cached.

Two environments, each in ``.cache/interop/<name>-<digest>/`` at the repository root
(git-ignored), where the digest covers everything that shapes it (its requirements, the
Python version, and for ``mxd-metaxy`` mxd's own ``pyproject.toml``):

- ``metaxy``: Metaxy 0.1.11 with its lock file's versions (``metaxy-requirements.txt``).
  The differential driver runs there, in a process of its own.
- ``mxd-metaxy``: mxd installed from this checkout (editable, so it runs the code under
  test) with ``metaxy==0.1.11`` beside it, as a Metaxy user who adds mxd to a project's
  environment gets it: pip resolves mxd's requirements (newest DuckDB, Polars, sqlglot) and
  Metaxy accepts them. Metaxy's pins cannot hold mxd: mxd's filters need sqlglot 30's
  syntax tree. Only Metaxy's definitions (pydantic models) run there, never its stores.

An environment is used only after a health check (imports, versions) passes; one that
is half-built, or broken later, is deleted and built again. A build that fails raises,
so the tests fail rather than skip: a fresh machine must pass them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = REPO / ".cache" / "interop"
READY = ".interop-ready.json"
METAXY_VERSION = "0.1.11"

PIP = (
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--no-input",
    "--quiet",
    "--only-binary=:all:",
)

# What each environment must import, and at which versions (None: any).
_CHECK = """
import importlib.metadata as md, json, sys
wanted = json.loads(sys.argv[1])
got = {}
for module, dist in wanted["imports"].items():
    __import__(module)
    got[dist] = md.version(dist)
print(json.dumps(got))
"""


class EnvironmentBuildError(RuntimeError):
    """Building or checking an interop environment failed (the tests then fail)."""


@dataclass(frozen=True)
class Environment:
    """A built, checked virtual environment."""

    name: str
    root: Path
    versions: dict[str, str]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name


@dataclass(frozen=True)
class Recipe:
    name: str
    install: tuple[tuple[str, ...], ...]  # pip argument lists, run in order
    imports: dict[str, str]  # module -> distribution whose version is reported
    pins: dict[str, str]  # distribution -> exact version the check insists on
    inputs: tuple[str, ...]  # texts the digest covers

    @property
    def digest(self) -> str:
        text = "\n".join((sys.version, *self.inputs, repr(self.install)))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _pins(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.split("[", 1)[0].strip().lower()] = version.strip()
    return pins


def metaxy_recipe() -> Recipe:
    requirements = HERE / "metaxy-requirements.txt"
    return Recipe(
        name="metaxy",
        install=(("-r", str(requirements)),),
        imports={
            "metaxy": "metaxy",
            "duckdb": "duckdb",
            "sqlglot": "sqlglot",
            "polars": "polars",
            "deltalake": "deltalake",
            "ibis": "ibis-framework",
            "xxhash": "xxhash",
        },
        pins=_pins(requirements),
        inputs=(requirements.read_text(),),
    )


def mxd_metaxy_recipe() -> Recipe:
    pyproject = REPO / "pyproject.toml"
    return Recipe(
        name="mxd-metaxy",
        # Binary wheels for the dependencies; mxd itself is built from source (editable).
        install=(("-e", str(REPO), f"metaxy=={METAXY_VERSION}", "--no-binary=mxd-cli"),),
        imports={"metaxy": "metaxy", "mxd_cli": "mxd-cli", "duckdb": "duckdb", "polars": "polars"},
        pins={"metaxy": METAXY_VERSION},
        inputs=(pyproject.read_text(), str(REPO)),
    )


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One builder at a time (two pytest processes may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: list[str], what: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentBuildError(f"{what}: timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise EnvironmentBuildError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _check(recipe: Recipe, root: Path) -> dict[str, str] | None:
    """The versions the environment reports, or None when it is broken or not as pinned."""
    python = root / "bin" / "python"
    if not python.exists() or not (root / READY).exists():
        return None
    try:
        out = _run(
            [str(python), "-c", _CHECK, json.dumps({"imports": recipe.imports})],
            f"checking {root}",
            timeout=180,
        )
        versions: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    except (EnvironmentBuildError, ValueError, IndexError):
        return None
    for dist, version in recipe.pins.items():
        if dist in versions and versions[dist] != version:
            return None
    return versions


def _build(recipe: Recipe, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(root)], f"creating the {recipe.name} venv", 300)
    for args in recipe.install:
        _run(
            [str(root / "bin" / "python"), *PIP, *args],
            f"installing {' '.join(args)} into the {recipe.name} venv",
            timeout=1200,
        )
    (root / READY).write_text(json.dumps({"recipe": recipe.name, "digest": recipe.digest}))


def ensure(recipe: Recipe) -> Environment:
    """The environment of ``recipe``: the cached one if it is healthy, else built anew."""
    root = CACHE / f"{recipe.name}-{recipe.digest}"
    with _exclusive(CACHE / f"{recipe.name}.lock"):
        versions = _check(recipe, root)
        if versions is None:
            _build(recipe, root)
            versions = _check(recipe, root)
            if versions is None:
                raise EnvironmentBuildError(
                    f"the {recipe.name} venv at {root} was built but does not import "
                    f"{sorted(recipe.imports)} at {recipe.pins}"
                )
        for stale in CACHE.glob(f"{recipe.name}-*"):
            if stale != root and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return Environment(recipe.name, root, versions)
