"""Declarative specs of features, fields and their dependencies (Metaxy's keyword arguments).

These are plain frozen values. They are validated on construction where a check needs
nothing but the value itself; checks that need the whole graph (unknown upstream keys,
unknown upstream fields, cycles) live in :mod:`mxd_cli.graph`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from mxd_cli.definitions.keys import FeatureKey, FieldKey
from mxd_cli.errors import DefinitionError

DEFAULT_CODE_VERSION = "__metaxy_initial__"
DEFAULT_FIELD = "default"
SYSTEM_PREFIX = "metaxy_"


class SpecialFieldDep(enum.Enum):
    """``ALL``: depend on every field of every upstream feature."""

    ALL = "__METAXY_ALL_DEP__"


ALL = SpecialFieldDep.ALL


def feature_key_of(feature: object) -> FeatureKey:
    """The key of a feature given as a key string, parts, a FeatureKey or a feature class."""
    spec = getattr(feature, "spec", None)
    if isinstance(spec, FeatureSpec):
        return spec.key
    if isinstance(feature, (str, FeatureKey)) or (
        isinstance(feature, Sequence) and not isinstance(feature, bytes)
    ):
        return FeatureKey.parse(feature)
    from mxd_cli.definitions.metaxy_specs import metaxy_key_of

    key = metaxy_key_of(feature)  # a class declared with Metaxy's own BaseFeature
    if key is not None:
        return key
    raise DefinitionError(
        f"expected a feature class or a key string, got {feature!r}",
        hint="pass the feature class itself or its key, e.g. feature='demo/raw'",
    )


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DefinitionError(f"{what} must be a list of strings, got {value!r}")
    if not all(isinstance(v, str) and v for v in value):
        raise DefinitionError(f"{what} must contain non-empty strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, init=False)
class FieldDep:
    """A field's explicit dependency on fields of one upstream feature."""

    feature: FeatureKey
    fields: tuple[FieldKey, ...] | SpecialFieldDep

    def __init__(
        self,
        feature: object,
        fields: Sequence[str | FieldKey] | SpecialFieldDep = ALL,
    ) -> None:
        object.__setattr__(self, "feature", feature_key_of(feature))
        if isinstance(fields, SpecialFieldDep):
            object.__setattr__(self, "fields", fields)
        else:
            object.__setattr__(self, "fields", tuple(FieldKey.parse(f) for f in fields))

    def to_metaxy_dict(self) -> dict[str, Any]:
        fields: Any = (
            self.fields.value
            if isinstance(self.fields, SpecialFieldDep)
            else [str(f) for f in self.fields]
        )
        return {"feature": str(self.feature), "fields": fields}


@dataclass(frozen=True, init=False)
class FieldSpec:
    """A field of a feature: its key, code version and (optional) explicit field deps."""

    key: FieldKey
    code_version: str
    deps: tuple[FieldDep, ...] | SpecialFieldDep

    def __init__(
        self,
        key: str | Sequence[str] | FieldKey,
        code_version: str | int = DEFAULT_CODE_VERSION,
        deps: Sequence[FieldDep] | SpecialFieldDep = (),
    ) -> None:
        object.__setattr__(self, "key", FieldKey.parse(key))
        if not isinstance(code_version, (str, int)) or isinstance(code_version, bool):
            raise DefinitionError(
                f"field {self.key}: code_version must be a string, got {code_version!r}"
            )
        object.__setattr__(self, "code_version", str(code_version))
        if isinstance(deps, SpecialFieldDep):
            object.__setattr__(self, "deps", deps)
        else:
            for dep in deps:
                if not isinstance(dep, FieldDep):
                    raise DefinitionError(
                        f"field {self.key}: deps must be FieldDep values or ALL, got {dep!r}"
                    )
            object.__setattr__(self, "deps", tuple(deps))

    def to_metaxy_dict(self) -> dict[str, Any]:
        deps: Any = (
            self.deps.value
            if isinstance(self.deps, SpecialFieldDep)
            else [d.to_metaxy_dict() for d in self.deps]
        )
        return {"key": str(self.key), "code_version": self.code_version, "deps": deps}


LineageKind = Literal["1:1", "N:1", "1:N"]


@dataclass(frozen=True)
class Lineage:
    """How upstream rows relate to this feature's rows.

    ``identity()`` (1:1, the default), ``aggregation(on=[...])`` (N:1: many upstream rows
    per sample, grouped by ``on``) or ``expansion(on=[...])`` (1:N: one upstream row
    becomes many samples sharing ``on``). ``aggregation()`` without ``on`` groups by the
    feature's id columns, as in Metaxy; ``FeatureSpec`` fills them in and keeps
    ``on_implied`` so the spec still renders as written.
    """

    kind: LineageKind = "1:1"
    on: tuple[str, ...] | None = None
    on_implied: bool = False

    @classmethod
    def identity(cls) -> Lineage:
        return cls("1:1", None)

    @classmethod
    def aggregation(cls, on: Sequence[str] | None = None) -> Lineage:
        if on is None:
            return cls("N:1", None, on_implied=True)
        return cls("N:1", _str_tuple(on, "aggregation on="))

    @classmethod
    def expansion(cls, on: Sequence[str]) -> Lineage:
        return cls("1:N", _str_tuple(on, "expansion on="))

    def to_metaxy_dict(self) -> dict[str, Any]:
        relationship: dict[str, Any] = {"type": self.kind}
        if self.kind != "1:1":
            relationship["on"] = None if self.on_implied else list(self.on or ())
        if self.kind == "1:N":
            relationship["id_generation_pattern"] = None
        return {"relationship": relationship}


def identity() -> Lineage:
    """1:1 lineage: each sample has one row in the upstream feature (the default)."""
    return Lineage.identity()


def aggregation(on: Sequence[str] | None = None) -> Lineage:
    """N:1 lineage: each sample aggregates the upstream rows sharing the ``on`` columns
    (by default the feature's id columns)."""
    return Lineage.aggregation(on)


def expansion(on: Sequence[str]) -> Lineage:
    """1:N lineage: each upstream row expands into the samples sharing the ``on`` columns."""
    return Lineage.expansion(on)


MappingKind = Literal["default", "all", "none", "specific"]


@dataclass(frozen=True)
class FieldsMapping:
    """How a dependency's fields map to this feature's fields when a field has no explicit deps.

    ``default()``: the upstream field with the same key, else all of that upstream's fields.
    """

    kind: MappingKind = "default"
    match_suffix: bool = False
    exclude_fields: tuple[FieldKey, ...] = ()
    mapping: tuple[tuple[FieldKey, tuple[FieldKey, ...]], ...] = ()

    @classmethod
    def default(
        cls, match_suffix: bool = False, exclude_fields: Sequence[str | FieldKey] = ()
    ) -> FieldsMapping:
        return cls("default", match_suffix, tuple(FieldKey.parse(f) for f in exclude_fields))

    @classmethod
    def all(cls) -> FieldsMapping:
        return cls("all")

    @classmethod
    def none(cls) -> FieldsMapping:
        return cls("none")

    @classmethod
    def specific(cls, mapping: Mapping[str, Sequence[str]]) -> FieldsMapping:
        pairs = tuple(
            (FieldKey.parse(ours), tuple(FieldKey.parse(u) for u in theirs))
            for ours, theirs in mapping.items()
        )
        return cls("specific", mapping=pairs)

    def to_metaxy_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind}
        if self.kind == "default":
            body["match_suffix"] = self.match_suffix
            body["exclude_fields"] = [str(f) for f in self.exclude_fields]
        elif self.kind == "specific":
            # Metaxy keeps a set per field and renders it sorted, each key as its parts.
            body["mapping"] = {
                str(k): [list(u.parts) for u in sorted(set(v))] for k, v in self.mapping
            }
        return {"mapping": body}


@dataclass(frozen=True, init=False)
class FeatureDep:
    """A dependency on an upstream feature and how its rows are joined in."""

    feature: FeatureKey
    rename: Mapping[str, str] | None
    select: tuple[str, ...] | None
    filters: tuple[str, ...] | None
    optional: bool
    lineage: Lineage
    fields_mapping: FieldsMapping

    def __init__(
        self,
        feature: object,
        rename: Mapping[str, str] | None = None,
        select: Sequence[str] | None = None,
        filters: Sequence[str] | None = None,
        optional: bool = False,
        lineage: Lineage | None = None,
        fields_mapping: FieldsMapping | None = None,
        sql_filters: Sequence[str] | None = None,
    ) -> None:
        key = feature_key_of(feature)
        object.__setattr__(self, "feature", key)
        if rename is not None:
            if not isinstance(rename, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in rename.items()
            ):
                raise DefinitionError(f"dep on {key}: rename must map column names to new names")
            for new in rename.values():
                if new.startswith(SYSTEM_PREFIX):
                    raise DefinitionError(
                        f"dep on {key}: cannot rename a column to {new!r}",
                        hint=f"names starting with {SYSTEM_PREFIX!r} are reserved for system columns",
                    )
            rename = dict(rename)
        object.__setattr__(self, "rename", rename)
        object.__setattr__(
            self, "select", None if select is None else _str_tuple(select, f"dep on {key}: select")
        )
        if filters is not None and sql_filters is not None:
            raise DefinitionError(f"dep on {key}: give filters or sql_filters, not both")
        chosen = filters if filters is not None else sql_filters
        object.__setattr__(
            self,
            "filters",
            None if chosen is None else _str_tuple(chosen, f"dep on {key}: filters"),
        )
        if not isinstance(optional, bool):
            raise DefinitionError(f"dep on {key}: optional must be True or False")
        object.__setattr__(self, "optional", optional)
        object.__setattr__(self, "lineage", lineage or Lineage.identity())
        object.__setattr__(self, "fields_mapping", fields_mapping or FieldsMapping.default())

    def to_metaxy_dict(self) -> dict[str, Any]:
        return {
            "feature": str(self.feature),
            "select": list(self.select) if self.select is not None else None,
            "rename": dict(self.rename) if self.rename is not None else None,
            "fields_mapping": self.fields_mapping.to_metaxy_dict(),
            "sql_filters": list(self.filters) if self.filters is not None else None,
            "lineage": self.lineage.to_metaxy_dict(),
            "optional": self.optional,
        }


def _with_implied_on(dep: FeatureDep, id_columns: tuple[str, ...]) -> FeatureDep:
    """An aggregation without ``on`` groups by the feature's id columns."""
    if dep.lineage.kind != "N:1" or dep.lineage.on is not None:
        return dep
    return replace(dep, lineage=Lineage("N:1", id_columns, on_implied=True))


@dataclass(frozen=True, init=False)
class FeatureSpec:
    """What a feature is: key, id columns, upstream deps and fields.

    Example::

        FeatureSpec(key="demo/clean", id_columns=["id"], deps=[FeatureDep(feature=Raw)],
                    fields=[FieldSpec(key="value", code_version="1")])
    """

    key: FeatureKey
    id_columns: tuple[str, ...]
    deps: tuple[FeatureDep, ...]
    fields: tuple[FieldSpec, ...]
    metadata: Mapping[str, Any]
    description: str | None

    def __init__(
        self,
        key: str | Sequence[str] | FeatureKey,
        id_columns: Sequence[str],
        deps: Sequence[FeatureDep | object] | None = None,
        fields: Sequence[FieldSpec | str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        fkey = FeatureKey.parse(key)
        object.__setattr__(self, "key", fkey)
        ids = _str_tuple(id_columns, f"feature {fkey}: id_columns")
        if not ids:
            raise DefinitionError(f"feature {fkey}: id_columns must not be empty")
        if len(set(ids)) != len(ids):
            raise DefinitionError(f"feature {fkey}: id_columns has duplicates: {list(ids)}")
        for col in ids:
            if col.startswith(SYSTEM_PREFIX):
                raise DefinitionError(
                    f"feature {fkey}: id column {col!r} uses the reserved prefix {SYSTEM_PREFIX!r}"
                )
        object.__setattr__(self, "id_columns", ids)
        given = (d if isinstance(d, FeatureDep) else FeatureDep(feature=d) for d in deps or ())
        object.__setattr__(self, "deps", tuple(_with_implied_on(d, ids) for d in given))
        seen_deps: set[FeatureKey] = set()
        for dep in self.deps:
            if dep.feature in seen_deps:
                raise DefinitionError(f"feature {fkey}: depends on {dep.feature} twice")
            if dep.feature == fkey:
                raise DefinitionError(f"feature {fkey} depends on itself")
            seen_deps.add(dep.feature)
        specs = tuple(f if isinstance(f, FieldSpec) else FieldSpec(key=f) for f in fields or ())
        if not specs:
            specs = (FieldSpec(key=DEFAULT_FIELD),)
        seen: dict[str, FieldKey] = {}
        for spec in specs:
            clash = seen.get(spec.key.struct_key)
            if clash is not None:
                raise DefinitionError(
                    f"feature {fkey}: fields {clash} and {spec.key} share the column name "
                    f"{spec.key.struct_key!r}"
                    if clash != spec.key
                    else f"feature {fkey}: field {spec.key} is declared twice"
                )
            seen[spec.key.struct_key] = spec.key
        object.__setattr__(self, "fields", specs)
        object.__setattr__(self, "metadata", dict(metadata or {}))
        if description is not None and not isinstance(description, str):
            raise DefinitionError(f"feature {fkey}: description must be a string")
        object.__setattr__(self, "description", description)

    def field(self, key: str | FieldKey) -> FieldSpec:
        wanted = FieldKey.parse(key)
        for spec in self.fields:
            if spec.key == wanted:
                return spec
        raise KeyError(str(wanted))

    @property
    def tags(self) -> tuple[str, ...]:
        tags = self.metadata.get("tags", ())
        if isinstance(tags, str):
            return (tags,)
        return tuple(str(t) for t in tags) if isinstance(tags, Sequence) else ()

    def to_metaxy_dict(self) -> dict[str, Any]:
        """The spec as Metaxy's ``model_dump(mode="json")`` renders it (same keys, same order)."""
        return {
            "key": str(self.key),
            "id_columns": list(self.id_columns),
            "deps": [d.to_metaxy_dict() for d in self.deps],
            "fields": [f.to_metaxy_dict() for f in self.fields],
            "metadata": dict(self.metadata),
            "description": self.description,
        }
