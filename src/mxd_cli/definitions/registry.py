"""Where feature classes and assets register themselves when their module is imported."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.spec import FeatureSpec
from mxd_cli.errors import DefinitionError


@dataclass(frozen=True)
class Origin:
    """Where a definition was written, for error messages."""

    module: str
    file: str | None
    line: int | None

    def __str__(self) -> str:
        if self.file is None:
            return self.module
        return f"{self.file}:{self.line}" if self.line else self.file

    @classmethod
    def of(cls, obj: Any) -> Origin:
        module = getattr(obj, "__module__", "?")
        try:
            file = inspect.getsourcefile(obj)
            line = inspect.getsourcelines(obj)[1]
        except (OSError, TypeError):
            file, line = None, None
        return cls(module, file, line)


@dataclass(frozen=True)
class FeatureDefinition:
    """A registered feature: its spec, the class that declared it and where."""

    spec: FeatureSpec
    cls: type | None
    origin: Origin
    columns: tuple[str, ...] = ()

    @property
    def key(self) -> FeatureKey:
        return self.spec.key


@dataclass
class Registry:
    """Feature definitions (and assets) in the order they were declared."""

    features: dict[FeatureKey, FeatureDefinition] = field(default_factory=dict)
    assets: dict[FeatureKey, Any] = field(default_factory=dict)

    def add_feature(self, definition: FeatureDefinition) -> None:
        previous = self.features.get(definition.key)
        if previous is not None:
            raise DefinitionError(
                f"feature key {definition.key} is declared twice: "
                f"{previous.origin} and {definition.origin}",
                hint="each feature needs its own key",
                location=str(definition.origin),
            )
        self.features[definition.key] = definition

    def add_asset(self, key: FeatureKey, asset: Any, origin: Origin) -> None:
        previous = self.assets.get(key)
        if previous is not None:
            raise DefinitionError(
                f"feature {key} has two assets: {getattr(previous, 'origin', '?')} and {origin}",
                location=str(origin),
            )
        self.assets[key] = asset


_active: contextvars.ContextVar[Registry] = contextvars.ContextVar("mxd_registry")
_default = Registry()


def active_registry() -> Registry:
    """The registry that features declared now register into."""
    return _active.get(_default)


@contextlib.contextmanager
def collecting(registry: Registry) -> Iterator[Registry]:
    """Register every feature declared inside the block into ``registry``."""
    token = _active.set(registry)
    try:
        yield registry
    finally:
        _active.reset(token)
