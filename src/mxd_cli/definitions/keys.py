"""Feature and field keys: the names everything else is keyed by."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mxd_cli.errors import DefinitionError

_PART = re.compile(r"^[a-z0-9_-]+$")
_FIRST_PART = re.compile(r"^[a-z_]")


def _split(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = tuple(value.split("/"))
    elif isinstance(value, Sequence) and all(isinstance(p, str) for p in value):
        parts = tuple(value)
    else:
        raise DefinitionError(
            f"a {what} key must be a string like 'a/b' or a list of parts, got {value!r}"
        )
    if not parts or any(p == "" for p in parts):
        raise DefinitionError(f"{what} key {value!r} has an empty part")
    for part in parts:
        if not _PART.match(part):
            raise DefinitionError(
                f"{what} key {'/'.join(parts)!r}: part {part!r} may only contain a-z, 0-9, '_' and '-'",
                hint="use lowercase letters, digits, '_' and '-'; separate parts with '/'",
            )
        if "__" in part:
            raise DefinitionError(
                f"{what} key {'/'.join(parts)!r}: part {part!r} contains '__'",
                hint="'__' separates key parts in table names, so it cannot appear inside a part",
            )
    if not _FIRST_PART.match(parts[0]):
        raise DefinitionError(
            f"{what} key {'/'.join(parts)!r} must start with a letter or '_'",
        )
    return parts


@dataclass(frozen=True, order=True)
class FeatureKey:
    """A feature's key, e.g. ``FeatureKey.parse("demo/raw")``; ordered by its parts."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, value: str | Sequence[str] | FeatureKey) -> FeatureKey:
        if isinstance(value, FeatureKey):
            return value
        return cls(_split(value, "feature"))

    @property
    def table_name(self) -> str:
        """The table name in a store: parts joined by ``__``, ``-`` replaced by ``_``."""
        return "__".join(self.parts).replace("-", "_")

    def __str__(self) -> str:
        return "/".join(self.parts)


@dataclass(frozen=True, order=True)
class FieldKey:
    """A field's key, e.g. ``audio`` or ``audio/en`` (struct name ``audio_en``)."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, value: str | Sequence[str] | FieldKey) -> FieldKey:
        if isinstance(value, FieldKey):
            return value
        return cls(_split(value, "field"))

    @property
    def struct_key(self) -> str:
        """The name of this field inside ``metaxy_*_by_field`` struct columns."""
        return "_".join(self.parts)

    def __str__(self) -> str:
        return "/".join(self.parts)
