"""Features declared with Metaxy's own classes, read into mxd's specs unchanged.

A Metaxy project defines ``class Raw(metaxy.BaseFeature, spec=metaxy.FeatureSpec(...))``.
When Metaxy is installed, the loader collects the features such modules declare
(:func:`collecting_metaxy_features`) and turns each spec into mxd's
(:func:`spec_from_metaxy`), so mxd's commands work on the project without an edit.

The translation reads Metaxy's serialized form, ``spec.model_dump(mode="json")`` — what
Metaxy itself stores in graph snapshots — and rebuilds every part of it: key, id columns,
fields with code versions and field deps, feature deps with rename, select, filters,
optional, lineage and fields mapping, metadata and description. ``to_metaxy_dict()`` of
the result renders that same dump again, so versions come out as Metaxy computes them.

Metaxy is imported only when a project module has imported it already: a project without
Metaxy pays nothing.

Example::

    spec = spec_from_metaxy({"key": "demo/raw", "id_columns": ["id"], "fields": [...]})
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.registry import FeatureDefinition, Origin
from mxd_cli.definitions.spec import (
    ALL,
    SYSTEM_PREFIX,
    FeatureDep,
    FeatureSpec,
    FieldDep,
    FieldsMapping,
    FieldSpec,
    Lineage,
    SpecialFieldDep,
)
from mxd_cli.errors import DefinitionError

_ALL_MARK = ALL.value


def spec_from_metaxy(dump: Mapping[str, Any], *, where: str | None = None) -> FeatureSpec:
    """mxd's spec of a Metaxy ``FeatureSpec`` given as ``model_dump(mode="json")``."""
    key = dump.get("key")
    try:
        return FeatureSpec(
            key=_key_text(key),
            id_columns=list(dump["id_columns"]),
            deps=[_dep(d) for d in dump.get("deps") or ()],
            fields=[_field(f) for f in dump.get("fields") or ()],
            metadata=dict(dump.get("metadata") or {}),
            description=dump.get("description"),
        )
    except DefinitionError as exc:
        if exc.location is None:
            exc.location = where
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DefinitionError(
            f"Metaxy feature {key!r}: cannot read its spec ({type(exc).__name__}: {exc})",
            hint="mxd reads Metaxy 0.1 specs; is this Metaxy version supported?",
            location=where,
        ) from exc


def _key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "/".join(str(p) for p in value)
    raise ValueError(f"a key must be a string or a list of parts, got {value!r}")


def _field(dump: Mapping[str, Any]) -> FieldSpec:
    deps = dump.get("deps") or []
    field_deps: list[FieldDep] | SpecialFieldDep
    if deps == _ALL_MARK:
        field_deps = ALL
    else:
        field_deps = [
            FieldDep(
                feature=_key_text(d["feature"]),
                fields=ALL
                if d.get("fields", _ALL_MARK) == _ALL_MARK
                else [_key_text(f) for f in d["fields"]],
            )
            for d in deps
        ]
    return FieldSpec(key=_key_text(dump["key"]), code_version=dump["code_version"], deps=field_deps)


def _dep(dump: Mapping[str, Any]) -> FeatureDep:
    select = dump.get("select")
    filters = dump.get("sql_filters", dump.get("filters"))
    return FeatureDep(
        feature=_key_text(dump["feature"]),
        rename=dump.get("rename"),
        select=None if select is None else list(select),
        filters=None if filters is None else list(filters),
        optional=bool(dump.get("optional", False)),
        lineage=_lineage(dump.get("lineage") or {}),
        fields_mapping=_fields_mapping(dump.get("fields_mapping") or {}),
    )


def _lineage(dump: Mapping[str, Any]) -> Lineage:
    relationship = dump.get("relationship") or {"type": "1:1"}
    kind = relationship.get("type", "1:1")
    on: Sequence[str] | None = relationship.get("on")
    if kind == "1:1":
        return Lineage.identity()
    if kind == "N:1":
        return Lineage.aggregation(on)
    if kind == "1:N":
        if relationship.get("id_generation_pattern") is not None:
            raise DefinitionError(
                "expansion lineage with an id_generation_pattern is not supported",
                hint="generate the child ids in the asset",
            )
        return Lineage.expansion(on or ())
    raise ValueError(f"unknown lineage type {kind!r}")


def _fields_mapping(dump: Mapping[str, Any]) -> FieldsMapping:
    mapping = dump.get("mapping") or {"type": "default"}
    kind = mapping.get("type", "default")
    if kind == "default":
        return FieldsMapping.default(
            match_suffix=bool(mapping.get("match_suffix", False)),
            exclude_fields=[_key_text(f) for f in mapping.get("exclude_fields") or ()],
        )
    if kind == "all":
        return FieldsMapping.all()
    if kind == "none":
        return FieldsMapping.none()
    if kind == "specific":
        return FieldsMapping.specific(
            {ours: [_key_text(t) for t in theirs] for ours, theirs in mapping["mapping"].items()}
        )
    raise ValueError(f"unknown fields mapping type {kind!r}")


# -- the features Metaxy classes declare ---------------------------------------------------


def _metaxy() -> Any | None:
    """Metaxy's package if something imported it already, else None (never imports it)."""
    return sys.modules.get("metaxy")


def metaxy_key_of(feature: object) -> FeatureKey | None:
    """The key of a Metaxy feature class or spec; None for anything else."""
    metaxy = _metaxy()
    if metaxy is None:
        return None
    spec: Any = None
    if isinstance(feature, type) and issubclass(feature, metaxy.BaseFeature):
        with contextlib.suppress(Exception):
            spec = getattr(feature, "spec")()  # noqa: B009 (a Metaxy classmethod)
    elif isinstance(feature, metaxy.FeatureSpec):
        spec = feature
    if spec is None:
        return None
    return FeatureKey.parse(spec.key.to_string())


class MetaxyFeatures:
    """What Metaxy classes declared while a block ran (see :func:`collecting_metaxy_features`)."""

    def __init__(self) -> None:
        self._graph: Any = None

    def definitions(self) -> list[FeatureDefinition]:
        """One mxd definition per Metaxy feature, in the order Metaxy registered them."""
        if self._graph is None:
            return []
        found = []
        for metaxy_definition in self._graph.feature_definitions_by_key.values():
            if getattr(metaxy_definition, "is_external", False):
                continue
            cls = getattr(metaxy_definition, "_feature_class", None)
            origin = Origin.of(cls) if cls is not None else Origin("metaxy", None, None)
            # The definition's spec, as Metaxy keeps it: the class docstring becomes the
            # description when the spec has none, and Metaxy's snapshots record it so.
            dump = metaxy_definition.spec.model_dump(mode="json")
            spec = spec_from_metaxy(dump, where=str(origin))
            found.append(FeatureDefinition(spec, cls, origin, _user_columns(cls)))
        return found


def _user_columns(cls: Any) -> tuple[str, ...]:
    fields = getattr(cls, "model_fields", None) or {}
    return tuple(
        name for name in fields if not name.startswith(SYSTEM_PREFIX) and not name.startswith("_")
    )


@contextlib.contextmanager
def collecting_metaxy_features() -> Iterator[MetaxyFeatures]:
    """Collect the Metaxy features that classes declared inside the block register.

    Metaxy registers a feature class in its active graph when the class is created. If
    Metaxy is loaded already, the block gets a fresh graph of its own (so loading a
    project twice in one process finds its features once). Otherwise modules that import
    Metaxy during the block register into Metaxy's default graph, new with that import.
    """
    collected = MetaxyFeatures()
    metaxy = _metaxy()
    if metaxy is not None:
        graph = metaxy.FeatureGraph()
        with graph.use():
            yield collected
        collected._graph = graph
        return
    yield collected
    metaxy = _metaxy()
    if metaxy is not None:
        collected._graph = metaxy.FeatureGraph.get_active()
