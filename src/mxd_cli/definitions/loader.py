"""Import a project's entrypoint modules and collect the features they declare.

Features come from mxd's classes and, when the modules use Metaxy's own classes
(``metaxy.BaseFeature``), from those too (see :mod:`mxd_cli.definitions.metaxy_specs`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from mxd_cli.definitions.metaxy_specs import collecting_metaxy_features
from mxd_cli.definitions.registry import Registry, collecting
from mxd_cli.errors import DefinitionError


def load_entrypoints(root: Path, entrypoints: Sequence[str]) -> Registry:
    """Import ``entrypoints`` with ``root`` on ``sys.path``; return what they registered.

    Modules from the project folder are imported afresh on every call, so a process can load
    several projects (tests do) without stale definitions. Anything the modules print goes
    to stderr: stdout carries command output only.
    """
    root = root.resolve()
    registry = Registry()
    with (
        _on_sys_path(root),
        contextlib.redirect_stdout(sys.stderr),
        collecting(registry),
        collecting_metaxy_features() as metaxy_features,
    ):
        _forget_project_modules(root, entrypoints)
        for name in entrypoints:
            _import(name, root)
    for definition in metaxy_features.definitions():
        registry.add_feature(definition)
    return registry


@contextlib.contextmanager
def _on_sys_path(root: Path) -> Iterator[None]:
    entry = str(root)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _forget_project_modules(root: Path, entrypoints: Sequence[str]) -> None:
    names = {n for e in entrypoints for n in _prefixes(e)}
    # Project modules were imported through `root` itself (resolved, first on sys.path), so
    # a string prefix finds them; resolving every loaded module's path costs ~0.2 s.
    prefix = os.path.join(str(root), "")
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        inside = isinstance(file, str) and os.path.abspath(file).startswith(prefix)
        if inside or name in names:
            del sys.modules[name]
    importlib.invalidate_caches()


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _import(name: str, root: Path) -> None:
    if name.endswith(".py") or "/" in name:
        raise DefinitionError(
            f"entrypoint {name!r} is a path, not a module name",
            hint=f"write it as a module name, e.g. {name.removesuffix('.py').replace('/', '.')!r}",
        )
    try:
        importlib.import_module(name)
    except DefinitionError as exc:
        if exc.location is None:
            exc.location = _user_frame(exc, root)
        raise
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" + (f":{exc.offset}" if exc.offset else "")
        raise DefinitionError(
            f"syntax error in module {name!r}: {exc.msg}",
            hint=(exc.text or "").strip() or None,
            location=where,
        ) from exc
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name in _prefixes(name):
            raise DefinitionError(
                f"entrypoint module {name!r} not found in {root}",
                hint="check 'entrypoints' in the config; modules are imported with the "
                "project folder on sys.path",
            ) from exc
        raise DefinitionError(
            f"importing module {name!r} failed: {exc}",
            hint="install the missing package or fix the import",
            location=_user_frame(exc, root),
        ) from exc
    except Exception as exc:
        raise DefinitionError(
            f"importing module {name!r} failed: {type(exc).__name__}: {exc}",
            location=_user_frame(exc, root),
        ) from exc


def _user_frame(exc: BaseException, root: Path) -> str | None:
    """``file:line`` of the innermost traceback frame inside the project folder."""
    found: str | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve().is_relative_to(root):
            found = f"{frame.filename}:{frame.lineno}"
    return found
