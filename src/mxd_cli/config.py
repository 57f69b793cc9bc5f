"""Project configuration: ``metaxy.toml`` (or ``[tool.metaxy]`` in ``pyproject.toml``).

The file uses Metaxy's keys, so one file serves both tools. Loading goes: discover the
file; read it and the files it extends (each with ``${VAR}`` expanded and relative store
paths resolved against its own folder); apply ``METAXY_*`` overrides; validate.

Example::

    from mxd_cli.config import load_config

    config = load_config()            # metaxy.toml found from the current directory up
    store = config.store_config()     # the default store ("dev" unless `store` says otherwise)
    print(store.type, store.options["database"])

Every problem raises :class:`~mxd_cli.errors.ConfigError`; its ``location`` is the file
(``file:line:column`` for TOML syntax errors) or the ``METAXY_*`` variable at fault.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from mxd_cli.config_env import (
    CONFIG_VARIABLE,
    Key,
    Origins,
    apply_overrides,
    dotted,
    expand_env,
    forget,
)
from mxd_cli.errors import ConfigError, did_you_mean

HASH_ALGORITHMS = ("xxhash32", "xxhash64", "xxh3_64", "wyhash", "md5", "sha256")
DEFAULT_STORE = "dev"
DEFAULT_HASH_ALGORITHM = "xxhash32"
#: Defaults of the ``[ext.mxd]`` settings; ``Config.mxd`` holds only what the user set.
MXD_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"chunk_size": 10_000, "lock_timeout": 0.0, "max_orphan_fraction": 0.5}
)

# Every top-level key Metaxy's `MetaxyConfig` has accepted (src/metaxy/config.py and
# src/metaxy/config/models/metaxy_config.py), with the kind of value it takes. mxd reads
# project, entrypoints, store, stores, hash_truncation_length, auto_create_tables, ext.mxd
# and extend; the rest are Metaxy's business and are checked for type only.
TOP_LEVEL_KEYS: Mapping[str, str] = {
    "project": "string",
    "entrypoints": "strings",
    "store": "string",
    "stores": "table",
    "hash_truncation_length": "integer",
    "auto_create_tables": "boolean",
    "extend": "string",
    "ext": "table",
    "theme": "string",
    "migrations_dir": "string",
    "enable_map_datatype": "boolean",
    "sync": "boolean",
    "locked": "boolean",
    "extra_features": "array",
    "metaxy_lock_path": "string",
}
_STORE_KEYS = ("type", "config")
# `enable` is the one field of Metaxy's PluginConfig; mxd accepts and ignores it.
_MXD_KEYS: Mapping[str, str] = {
    "chunk_size": "integer",
    "lock_timeout": "number",
    "max_orphan_fraction": "number",
    "enable": "boolean",
}

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

_KINDS: Mapping[str, tuple[str, Callable[[object], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "strings": (
        "an array of strings",
        lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    ),
    "array": ("an array", lambda v: isinstance(v, list)),
    "table": ("a table", lambda v: isinstance(v, dict)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
}

_Data = dict[str, Any]


@dataclass(frozen=True)
class StoreConfig:
    """One ``[stores.NAME]`` table, validated.

    ``options`` is the ``config`` table without ``fallback_stores`` and ``hash_algorithm``
    (those are fields here), with ``database`` / ``root_path`` made absolute.
    """

    name: str
    type: str
    options: Mapping[str, Any]
    fallback_stores: tuple[str, ...] = ()
    hash_algorithm: str = DEFAULT_HASH_ALGORITHM
    #: Warnings to show when the store is opened (e.g. a relative path that Metaxy, which
    #: resolves against the current directory, would read elsewhere).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The validated configuration of one project.

    Example::

        config = load_config(Path("metaxy.toml"))
        config.store_config("prod").fallback_stores
    """

    path: Path | None
    root: Path
    project: str
    entrypoints: tuple[str, ...]
    store: str
    stores: Mapping[str, StoreConfig]
    hash_truncation_length: int = 8
    auto_create_tables: bool = True
    mxd: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def store_config(self, name: str | None = None) -> StoreConfig:
        """The store called ``name`` (the default store when None)."""
        wanted = self.store if name is None else name
        if wanted not in self.stores:
            raise ConfigError(
                f"store '{wanted}' is not configured",
                hint=_choose_hint(wanted, self.stores, "configured stores"),
                location=None if self.path is None else str(self.path),
            )
        return self.stores[wanted]


def find_config_file(
    explicit: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The config file to use: ``explicit``, else ``$METAXY_CONFIG``, else the nearest one.

    Walking up from ``cwd``, each folder offers ``metaxy.toml`` first, then a
    ``pyproject.toml`` with a non-empty ``[tool.metaxy]`` (Metaxy's own search order).
    """
    env = os.environ if environ is None else environ
    here = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    if explicit is not None:
        return _existing_file(here / explicit, "--config")
    if env.get(CONFIG_VARIABLE):
        return _existing_file(here / env[CONFIG_VARIABLE], CONFIG_VARIABLE)
    for folder in (here, *here.parents):
        candidate = folder / "metaxy.toml"
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _read_toml(pyproject):
            return pyproject
    raise ConfigError(
        f"no metaxy.toml found in {here} or its parents",
        hint="create one (metaxy.toml.example documents every key) or pass --config PATH",
    )


def load_config(
    explicit: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Find, read and validate the configuration (see :func:`find_config_file`)."""
    env = os.environ if environ is None else environ
    here = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    path = find_config_file(explicit, cwd=here, environ=env)
    origins: Origins = {(): str(path)}
    data = _read_with_bases(path, env, (path,), origins, here)
    apply_overrides(data, env, origins, takes_text=_takes_text)
    # Paths set by overrides are relative to where the command runs.
    _resolve_store_paths(data.get("stores"), here, here)
    return _build(data, path, origins)


# ---- reading -------------------------------------------------------------------------


def _existing_file(path: Path, source: str) -> Path:
    path = Path(os.path.normpath(path))
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise ConfigError(
            f"config file {path} (from {source}) {what}",
            hint="check the path, or drop it to search for metaxy.toml from the current folder",
        )
    return path


def _read_toml(path: Path) -> _Data:
    """The metaxy part of ``path``: the whole file, or ``[tool.metaxy]`` of a pyproject."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(path, exc) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", location=str(path)) from exc
    if path.name != "pyproject.toml":
        return document
    tool = document.get("tool")
    section = tool.get("metaxy", {}) if isinstance(tool, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError("[tool.metaxy] must be a table", location=str(path))
    return section


def _toml_error(path: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    # Python 3.13+ exposes msg/lineno/colno; older versions only put them in the text.
    message: str = getattr(exc, "msg", None) or str(exc)
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    position = _TOML_POSITION.search(message)
    if position:
        line, column = int(position[1]), int(position[2])
        message = message[: position.start()]
    location = f"{path}:{line}:{column}" if line else str(path)
    return ConfigError(f"invalid TOML: {message}", location=location)


def _read_with_bases(
    path: Path, env: Mapping[str, str], chain: tuple[Path, ...], origins: Origins, cwd: Path
) -> _Data:
    """``path`` merged over the files it extends, by Metaxy's rules: scalars replaced,
    tables merged one level deep, arrays concatenated (base first)."""
    where = str(path)
    data = expand_env(_read_toml(path), (), env, where)
    _resolve_store_paths(data.get("stores"), path.parent, cwd)
    base: _Data = {}
    if "extend" in data:
        extend = data.pop("extend")
        _check_kind(extend, "string", ("extend",), where)
        target = Path(os.path.normpath(path.parent / Path(extend).expanduser()))
        if not target.is_file():
            raise ConfigError(f"'extend' points to a missing file: {target}", location=where)
        if target.resolve() in {p.resolve() for p in chain}:
            cycle = " -> ".join(str(p) for p in (*chain, target))
            raise ConfigError(
                f"'extend' forms a cycle: {cycle}",
                hint="remove 'extend' from one of these files",
                location=where,
            )
        base = _read_with_bases(target, env, (*chain, target), origins, cwd)
    merged = dict(base)
    for key, value in data.items():
        old = base.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {**old, **value}
            origins.update({(key, sub): where for sub in value})
            continue
        merged[key] = old + value if isinstance(value, list) and isinstance(old, list) else value
        forget(origins, (key,))
        origins[(key,)] = where
    return merged


def _resolve_store_paths(stores: object, base: Path, cwd: Path | None = None) -> None:
    """Make relative local path options (``database``, ``root_path``...) absolute against
    ``base`` (the config file's folder; ``cwd`` for paths set by overrides).

    Metaxy resolves them against the current directory instead; where the two differ and
    either location exists, the store config keeps a warning (``_PATH_NOTES``)."""
    from mxd_cli.store.registry import find

    if not isinstance(stores, dict):
        return
    for name, table in stores.items():
        if not isinstance(table, dict) or not isinstance(table.get("config"), dict):
            continue
        backend = find(table["type"]) if isinstance(table.get("type"), str) else None
        for spec in backend.options if backend is not None else ():
            # A path option with a default (spark's warehouse) is relative to the file too.
            if spec.kind == "path" and spec.default is not None:
                table["config"].setdefault(spec.name, spec.default)
        for option in backend.path_options if backend is not None else ():
            value = table["config"].get(option)
            if not (isinstance(value, str) and _is_local_path(value)):
                continue
            if os.path.isabs(os.path.expanduser(value)):
                continue
            resolved = os.path.normpath(base / Path(value).expanduser())
            table["config"][option] = resolved
            elsewhere = os.path.normpath((cwd or Path.cwd()) / Path(value).expanduser())
            if elsewhere != resolved and (os.path.exists(elsewhere) or os.path.exists(resolved)):
                table.setdefault(_PATH_NOTES, []).append(
                    f"store '{name}': {option} = {value!r} is read as {resolved} (relative "
                    f"to the config file); Metaxy reads it relative to the current directory, "
                    f"as {elsewhere}"
                )


_PATH_NOTES = "__mxd_path_notes"


def _is_local_path(value: str) -> bool:
    """A path on this machine (not ``:memory:``, a URI, or a MotherDuck name)."""
    if not value or _URI_SCHEME.match(value):
        return False
    return not value.startswith((":", "md:", "motherduck:"))


def _takes_text(key: Key) -> bool:
    """Keys whose override is text even when it looks like JSON (METAXY_PROJECT=2024)."""
    if len(key) == 1:
        return TOP_LEVEL_KEYS.get(key[0]) == "string"
    return len(key) == 3 and key[0] == "stores" and key[2] == "type"


# ---- validation ----------------------------------------------------------------------


def _build(data: _Data, path: Path, origins: Origins) -> Config:
    root = path.parent
    where = _locator(origins)

    for key, value in data.items():
        if key not in TOP_LEVEL_KEYS:
            raise _unknown_key((key,), TOP_LEVEL_KEYS, where(key))
        _check_kind(value, TOP_LEVEL_KEYS[key], (key,), where(key))
    length = data.get("hash_truncation_length", 8)
    if length < 8:
        raise ConfigError(
            f"'hash_truncation_length' must be at least 8, got {length}",
            hint="Metaxy refuses hashes shorter than 8 characters",
            location=where("hash_truncation_length"),
        )
    if "project" in data:
        _check_project(data["project"], where("project"))
    mxd = _mxd_settings(data.get("ext", {}), where)

    tables: _Data = data.get("stores", {})
    if tables:
        stores = {name: _store_config(name, table, where) for name, table in tables.items()}
        store = _default_store(data, stores, where)
    else:
        store = data.get("store", DEFAULT_STORE)
        database = str(root / ".mxd" / f"{store}.duckdb")
        stores = {store: StoreConfig(store, "duckdb", MappingProxyType({"database": database}))}
    _check_fallbacks(stores, where)
    return Config(
        path=path,
        root=root,
        project=data.get("project", root.name),
        entrypoints=tuple(data.get("entrypoints", ())),
        store=store,
        stores=MappingProxyType(stores),
        hash_truncation_length=length,
        auto_create_tables=data.get("auto_create_tables", True),
        mxd=MappingProxyType(mxd),
    )


def _locator(origins: Origins) -> Callable[..., str | None]:
    """``where(*key)``: the file (with the key's line when it can be found) or the
    environment variable a key came from."""
    from mxd_cli.config_lines import key_lines

    lines: dict[str, dict[Key, int]] = {}

    def where(*key: str) -> str | None:
        origin = next(
            (origins[key[:end]] for end in range(len(key), -1, -1) if key[:end] in origins), None
        )
        if origin is None or origin.startswith("environment variable"):
            return origin
        if origin not in lines:
            try:
                lines[origin] = key_lines(Path(origin).read_text())
            except (OSError, UnicodeDecodeError):
                lines[origin] = {}
        prefix: Key = ("tool", "metaxy") if Path(origin).name == "pyproject.toml" else ()
        for end in range(len(key), 0, -1):
            line = lines[origin].get(prefix + key[:end])
            if line is not None:
                return f"{origin}:{line}"
        return origin

    return where


def _check_kind(value: object, kind: str, key: Key, where: str | None) -> None:
    article, accepts = _KINDS[kind]
    if accepts(value):
        return
    shown = _describe(value)
    if kind == "strings" and isinstance(value, list):
        shown = "an array containing " + _describe(next(i for i in value if not isinstance(i, str)))
    raise ConfigError(f"'{dotted(key)}' must be {article}, got {shown}", location=where)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__.replace('int', 'integer')} {value}"
    if isinstance(value, list):
        return "an array"
    return "a table" if isinstance(value, dict) else type(value).__name__


def _unknown_key(
    key: Key, valid: Mapping[str, Any] | tuple[str, ...], where: str | None
) -> ConfigError:
    return ConfigError(
        f"unknown key '{dotted(key)}'",
        hint=_choose_hint(key[-1], valid, "valid keys"),
        location=where,
    )


def _choose_hint(name: str, valid: Mapping[str, Any] | tuple[str, ...], label: str) -> str:
    return did_you_mean(name, valid) or f"{label}: {', '.join(sorted(valid))}"


def _check_project(name: str, where: str | None) -> None:
    # Metaxy's rules: it scopes rows by project and builds table names from it.
    if not _PROJECT_NAME.match(name) or "__" in name:
        raise ConfigError(
            f"project name '{name}' is not valid",
            hint="use letters, digits, '-' and '_' only, and no double underscore",
            location=where,
        )


def _mxd_settings(ext: _Data, where: Callable[..., str | None]) -> _Data:
    for plugin, table in ext.items():
        _check_kind(table, "table", ("ext", plugin), where("ext", plugin))
    settings: _Data = dict(ext.get("mxd", {}))
    for key, value in settings.items():
        if key not in _MXD_KEYS:
            raise _unknown_key(("ext", "mxd", key), _MXD_KEYS, where("ext", "mxd", key))
        _check_kind(value, _MXD_KEYS[key], ("ext", "mxd", key), where("ext", "mxd", key))
    if settings.get("chunk_size", 1) <= 0:
        raise ConfigError(
            f"'ext.mxd.chunk_size' must be positive, got {settings['chunk_size']}",
            location=where("ext", "mxd", "chunk_size"),
        )
    if settings.get("lock_timeout", 0) < 0:
        raise ConfigError(
            f"'ext.mxd.lock_timeout' must be 0 or more seconds, got {settings['lock_timeout']}",
            hint="0 means do not wait for another writer",
            location=where("ext", "mxd", "lock_timeout"),
        )
    fraction = settings.get("max_orphan_fraction", 0.5)
    if not 0 <= fraction <= 1:
        raise ConfigError(
            f"'ext.mxd.max_orphan_fraction' must be between 0 and 1, got {fraction}",
            hint="the share of a feature's samples a run may soft-delete as orphans (0.5 = half)",
            location=where("ext", "mxd", "max_orphan_fraction"),
        )
    if "lock_timeout" in settings:
        settings["lock_timeout"] = float(settings["lock_timeout"])
    return settings


def _store_config(name: str, table: object, where: Callable[..., str | None]) -> StoreConfig:
    from mxd_cli.store.registry import backends, find, type_names

    key = ("stores", name)
    _check_kind(table, "table", key, where(*key))
    assert isinstance(table, dict)
    notes = tuple(table.pop(_PATH_NOTES, ()))
    for part in table:
        if part not in _STORE_KEYS:
            raise _unknown_key((*key, part), _STORE_KEYS, where(*key, part))
    if "type" not in table:
        raise ConfigError(
            f"store '{name}' has no 'type'",
            hint=f'add type = "duckdb" (or "delta") to [stores.{name}]',
            location=where(*key),
        )
    _check_kind(table["type"], "string", (*key, "type"), where(*key, "type"))
    backend = find(table["type"])
    if backend is None:
        # A dotted path only gets a suggestion for a known class under a wrong module.
        known = type_names()
        suffix = "." + table["type"].rsplit(".", 1)[-1]
        near = [t for t in known if t.endswith(suffix) or "." not in table["type"]]
        guess = did_you_mean(table["type"], near)
        short = [b.type for b in backends()]
        accepted = f"accepted types: {', '.join(short)} (or Metaxy's import path for one)"
        raise ConfigError(
            f"unknown store type '{table['type']}' for store '{name}'",
            hint=f"{guess} {accepted}" if guess else accepted,
            location=where(*key, "type"),
        )
    options_key = (*key, "config")
    _check_kind(table.get("config", {}), "table", options_key, where(*options_key))
    options = dict(table.get("config", {}))

    algorithm_key = (*options_key, "hash_algorithm")
    algorithm = options.pop("hash_algorithm", DEFAULT_HASH_ALGORITHM)
    _check_kind(algorithm, "string", algorithm_key, where(*algorithm_key))
    if algorithm.lower() not in HASH_ALGORITHMS:
        raise ConfigError(
            f"unknown hash_algorithm '{algorithm}' for store '{name}'",
            hint=_choose_hint(algorithm.lower(), HASH_ALGORITHMS, "accepted"),
            location=where(*algorithm_key),
        )
    fallback_key = (*options_key, "fallback_stores")
    fallbacks = options.pop("fallback_stores", [])
    _check_kind(fallbacks, "strings", fallback_key, where(*fallback_key))
    backend.validate(
        name, options, lambda option: where(*options_key, *(option,) if option else ())
    )
    if "." not in table["type"] and _metaxy_around(where(*key)):
        notes += (
            f"store '{name}': type = {table['type']!r} is mxd's short name, which Metaxy cannot "
            f'load; write type = "{backend.aliases[0]}" so both tools open this store',
        )
    accepted_by_metaxy = backend.metaxy_hash_algorithms
    if accepted_by_metaxy is not None and algorithm.lower() not in accepted_by_metaxy:
        notes += (
            f"store '{name}': Metaxy's {backend.type} store refuses hash_algorithm "
            f"'{algorithm.lower()}' (it accepts {', '.join(accepted_by_metaxy)}); "
            "only mxd can continue this store",
        )
    return StoreConfig(
        name=name,
        type=backend.type,
        options=MappingProxyType(options),
        fallback_stores=tuple(fallbacks),
        hash_algorithm=algorithm.lower(),
        warnings=notes,
    )


def _metaxy_around(location: str | None) -> bool:
    """Whether Metaxy is installed here, or the project's pyproject.toml depends on it."""
    import importlib.util

    if importlib.util.find_spec("metaxy") is not None:
        return True
    if not location:
        return False
    folder = Path(location.rsplit(":", 1)[0] if location[-1:].isdigit() else location).parent
    pyproject = folder / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        return False
    return bool(re.search(r"""["']metaxy[\[\]a-z,\s]*(?:[<>=~!].*)?["']""", text))


def _default_store(
    data: _Data, stores: Mapping[str, StoreConfig], where: Callable[..., str | None]
) -> str:
    if "store" in data:
        name: str = data["store"]
        if name not in stores:
            raise ConfigError(
                f"store '{name}' is not configured",
                hint=_choose_hint(name, tuple(stores), "configured stores"),
                location=where("store"),
            )
        return name
    if DEFAULT_STORE in stores:
        return DEFAULT_STORE
    if len(stores) == 1:
        return next(iter(stores))
    raise ConfigError(
        "several stores are configured and none is called 'dev'; 'store' must name the default",
        hint=f'add store = "{min(stores)}" (configured: {", ".join(sorted(stores))})',
        location=where("store"),
    )


def _check_fallbacks(stores: Mapping[str, StoreConfig], where: Callable[..., str | None]) -> None:
    for store in stores.values():
        key = ("stores", store.name, "config", "fallback_stores")
        for fallback in store.fallback_stores:
            if fallback not in stores:
                raise ConfigError(
                    f"store '{store.name}' falls back to '{fallback}', which is not configured",
                    hint=_choose_hint(fallback, tuple(stores), "configured stores"),
                    location=where(*key),
                )
            theirs = stores[fallback].hash_algorithm
            if theirs != store.hash_algorithm:
                # Provenance hashed one way never equals the other's: every sample served
                # by the fallback would read as stale (Metaxy refuses such a chain too).
                raise ConfigError(
                    f"store '{store.name}' hashes with {store.hash_algorithm} but falls back "
                    f"to '{fallback}', which hashes with {theirs}",
                    hint="every store of a fallback chain must use the same hash_algorithm",
                    location=where(*key),
                )
        # A store must not end up reading from itself through a chain of fallbacks.
        seen, todo = set(), list(store.fallback_stores)
        while todo:
            current = todo.pop()
            if current == store.name:
                raise ConfigError(
                    f"store '{store.name}' falls back to itself through fallback_stores",
                    hint="fallback stores must not form a cycle",
                    location=where(*key),
                )
            if current not in seen:
                seen.add(current)
                todo.extend(stores[current].fallback_stores)
