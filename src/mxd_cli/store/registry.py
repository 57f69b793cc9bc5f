"""The store backends: each declares its type names, its options and how to open it.

A backend lives in one module of :mod:`mxd_cli.store` that calls :func:`register` at import
time with a :class:`Backend`; adding a backend is one new module plus its name in
``_MODULES``. Backend modules import their heavy libraries (duckdb, deltalake, pyspark)
only when a store is opened, so validating a config costs nothing.

Options are validated when the config loads (``mxd check`` and every command): an unknown
or mistyped option is an error naming the file, line, store and key, never ignored — an
ignored option could send writes somewhere the user never meant.

Example::

    backend = find("metaxy.ext.duckdb.DuckDBMetadataStore")
    backend.type  # "duckdb"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mxd_cli.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from mxd_cli.config import StoreConfig
    from mxd_cli.store.base import MetadataStore

# Modules that register a backend, in the order `mxd list stores` names them.
_MODULES = ("mxd_cli.store.duckdb", "mxd_cli.store.delta", "mxd_cli.store.spark")

_KINDS: Mapping[str, tuple[str, Callable[[object], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "path": ("a path string", lambda v: isinstance(v, str) and v != ""),
    "strings": (
        "an array of strings",
        lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    ),
    "table": ("a table", lambda v: isinstance(v, dict)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
}


@dataclass(frozen=True)
class Option:
    """One key of ``[stores.NAME.config]``.

    ``unsupported``: a key Metaxy accepts that mxd does not implement; it may only be given
    its default (``default``), anything else is refused rather than ignored.
    """

    name: str
    kind: str
    help: str
    required: bool = False
    choices: tuple[str, ...] = ()
    unsupported: str | None = None
    default: Any = None


Check = Callable[[str, Mapping[str, Any], Callable[[str], "str | None"]], None]


@dataclass(frozen=True)
class Backend:
    """A store type: its names, options, and the class that opens it (``module:Class``)."""

    type: str
    aliases: tuple[str, ...]
    options: tuple[Option, ...]
    opener: str
    #: Hash algorithms Metaxy's store of this type accepts (None: all of them).
    metaxy_hash_algorithms: tuple[str, ...] | None = None
    #: Extra checks of the option values (a ConfigError names the option at fault).
    check: Check | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset((self.type, *self.aliases)))

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def path_options(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options if o.kind == "path")

    def validate(
        self, store: str, options: Mapping[str, Any], where: Callable[[str], str | None]
    ) -> None:
        """Check ``options`` (the config table without the generic keys); ``where(key)``
        gives the file and line of a key, for messages."""
        known = [o.name for o in self.options]
        for key, value in options.items():
            spec = self.option(key)
            if spec is None:
                raise ConfigError(
                    f"store '{store}': unknown {self.type} option '{key}'",
                    hint=did_you_mean(key, known) or f"{self.type} options: {', '.join(known)}",
                    location=where(key),
                )
            article, accepts = _KINDS[spec.kind]
            if not accepts(value):
                raise ConfigError(
                    f"store '{store}': option '{key}' must be {article}, got {value!r}",
                    hint=spec.help,
                    location=where(key),
                )
            if spec.choices and value not in spec.choices:
                raise ConfigError(
                    f"store '{store}': option '{key}' must be one of "
                    f"{', '.join(repr(c) for c in spec.choices)}, not {value!r}",
                    hint=did_you_mean(str(value), spec.choices),
                    location=where(key),
                )
            if spec.unsupported is not None and value != spec.default:
                raise ConfigError(
                    f"store '{store}': mxd does not support option '{key}' ({spec.unsupported})",
                    hint=f"remove '{key}' from the store's config to use this store with mxd",
                    location=where(key),
                )
        for spec in self.options:
            if spec.required and spec.name not in options:
                raise ConfigError(
                    f"store '{store}': the {self.type} option '{spec.name}' is required",
                    hint=spec.help,
                    location=where(""),
                )
        if self.check is not None:
            self.check(store, options, where)

    def open(self, config: StoreConfig, *, read_only: bool = False) -> MetadataStore:
        module, _, name = self.opener.partition(":")
        cls = getattr(importlib.import_module(module), name)
        store: MetadataStore = cls(config.name, config.options, read_only=read_only)
        return store


_BACKENDS: dict[str, Backend] = {}
_loaded = False


def register(backend: Backend) -> Backend:
    """Make ``backend`` known by its type name and aliases (called by backend modules)."""
    for name in backend.names:
        _BACKENDS[name] = backend
    return backend


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True


def find(type_name: str) -> Backend | None:
    """The backend a ``type`` value names (its short name, any case, or an import path)."""
    _load()
    return _BACKENDS.get(type_name) or _BACKENDS.get(type_name.lower())


def backends() -> list[Backend]:
    """Every registered backend, once each, in the order of ``_MODULES``."""
    _load()
    unique = {id(b): b for b in _BACKENDS.values()}.values()
    order = {module: n for n, module in enumerate(_MODULES)}
    return sorted(unique, key=lambda b: order.get(b.opener.partition(":")[0], len(order)))


def type_names() -> list[str]:
    """Every accepted ``type`` value."""
    _load()
    return sorted(_BACKENDS)
