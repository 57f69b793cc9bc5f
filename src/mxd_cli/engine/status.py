"""Per-feature status: counts from an increment, plus the reasons work is pending."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.increment import Increment
from mxd_cli.engine.upstream import ReadCurrent
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS, MetadataStore

Status = Literal["up_to_date", "needs_update", "missing", "error", "root"]


@dataclass
class FeatureStatus:
    """What ``mxd status`` reports for one feature."""

    feature: FeatureKey
    status: Status
    stored: int = 0
    new: int = 0
    stale: int = 0
    orphaned: int = 0
    unchanged: int = 0
    causes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        """Work is pending: the feature (or, for "missing", its upstreams) needs a run."""
        return self.status in ("needs_update", "missing")

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": str(self.feature),
            "status": self.status,
            "stored": self.stored,
            "new": self.new,
            "stale": self.stale,
            "orphaned": self.orphaned,
            "unchanged": self.unchanged,
            "causes": list(self.causes),
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def feature_status(
    node: FeatureNode,
    graph: FeatureGraph,
    increment: Increment,
    store: MetadataStore,
    *,
    feature_version: str,
    project: str,
    pending_upstream: list[FeatureKey],
    read: ReadCurrent,
    sources: Callable[[FeatureKey], MetadataStore | None],
) -> FeatureStatus:
    counts = increment.counts()
    result = FeatureStatus(
        node.key,
        "up_to_date",
        stored=counts["stored"],
        new=counts["new"],
        stale=counts["stale"],
        orphaned=counts["orphaned"],
        unchanged=counts["unchanged"],
    )
    history = store.scan(node.key.parts)
    older = 0
    if history is not None:
        older = (
            history.filter(pl.col(c.FEATURE_VERSION) != feature_version)
            .select(pl.len())
            .collect()
            .item()
        )
    if counts["stored"] == 0 and older == 0:
        result.causes.append("never materialized")
    elif counts["stored"] == 0 and older:
        result.causes.extend(_version_change(node, store, feature_version, project))
    root = node.is_root
    if counts["new"] and counts["stored"]:
        where = "returned by the asset" if root else "available upstream"
        result.causes.append(f"{_plural(counts['new'], 'new sample')} {where}")
    if counts["stale"]:
        result.causes.extend(
            _stale_causes(node, graph, increment, store, feature_version, read, sources)
        )
    if counts["orphaned"]:
        gone = "no longer returned by the asset" if root else "no longer produced upstream"
        result.causes.append(f"{_plural(counts['orphaned'], 'stored sample')} {gone}")
    for up in pending_upstream:
        result.causes.append(f"upstream {up} is not up to date")
    if counts["stored"] == 0:
        result.status = "missing"
    elif increment.pending:
        result.status = "needs_update"
    return result


def _version_change(
    node: FeatureNode, store: MetadataStore, feature_version: str, project: str
) -> list[str]:
    """Why the feature version moved, from the last recorded snapshot of another version."""
    snapshots = store.scan(FEATURE_VERSIONS)
    previous: dict[str, Any] | None = None
    if snapshots is not None:
        rows = (
            snapshots.filter(
                (pl.col("feature_key") == str(node.key))
                & (pl.col("metaxy_feature_version") != feature_version)
            )
            .sort("recorded_at")
            .collect()
        )
        if rows.height:
            previous = rows.row(-1, named=True)
    if previous is None:
        return [f"feature version changed (now {feature_version}); stored rows are of another"]
    old_fields: dict[str, str] = {}
    try:
        spec = json.loads(previous["feature_spec"])
        old_fields = {f["key"]: str(f["code_version"]) for f in spec.get("fields", [])}
    except (TypeError, ValueError, KeyError):
        pass
    causes = []
    for f in node.spec.fields:
        name = str(f.key)
        if name not in old_fields:
            causes.append(f"field {name} added")
        elif old_fields[name] != f.code_version:
            causes.append(
                f"code version of field {name} changed ({old_fields[name]} -> {f.code_version})"
            )
    for name in sorted(set(old_fields) - {str(f.key) for f in node.spec.fields}):
        causes.append(f"field {name} removed")
    old = previous["metaxy_feature_version"]
    if not causes:
        causes.append(f"upstream definitions changed (feature version {old} -> {feature_version})")
    return causes


def _stale_causes(
    node: FeatureNode,
    graph: FeatureGraph,
    increment: Increment,
    store: MetadataStore,
    feature_version: str,
    read: ReadCurrent,
    sources: Callable[[FeatureKey], MetadataStore | None],
) -> list[str]:
    """Attribute stale samples to the upstreams whose inputs to this feature changed.

    Upstream tables are append-only, so the upstream row that was current when our row was
    written is still there: compare its data versions (for the fields we read) with today's.
    """
    key = list(increment.key_columns)
    stale = increment.stale.select(key).unique()
    stored = store.read(node.key.parts, node.spec.id_columns, feature_version=feature_version)
    if stored is None or node.is_root:
        moved = "" if stored is None else _changed_fields(node, increment, stored)
        return [f"{_plural(stale.height, 'sample')} changed{moved}"]
    ours = stale.lazy().join(
        stored.group_by(key).agg(pl.col(c.UPDATED_AT).max().alias("__ours")), on=key
    )
    causes = []
    for dep in node.spec.deps:
        source = sources(dep.feature)
        current = read(dep.feature)
        history = None if source is None else source.scan(dep.feature.parts)
        rename = dict(dep.rename or {})
        ids = [rename.get(i, i) for i in graph[dep.feature].spec.id_columns]
        if current is None or history is None or sorted(ids) != sorted(key):
            continue
        read_fields = {
            p.field.struct_key
            for parents in node.parent_fields.values()
            for p in parents
            if p.feature == dep.feature
        }
        if not read_fields:
            continue
        then = (
            history.rename(rename, strict=False)
            .join(ours, on=key)
            .filter(pl.col(c.UPDATED_AT) <= pl.col("__ours"))
            .sort(c.UPDATED_AT)
            .group_by(key)
            .agg(pl.col(c.DATA_VERSION_BY_FIELD).last().alias("__then"))
        )
        now = current.rename(rename, strict=False).select(
            *key, pl.col(c.DATA_VERSION_BY_FIELD).alias("__now")
        )
        differs = pl.any_horizontal(
            pl.col("__then").struct.field(f) != pl.col("__now").struct.field(f)
            for f in sorted(read_fields)
        )
        changed = then.join(now, on=key).filter(differs).select(pl.len()).collect().item()
        if changed:
            causes.append(f"upstream {dep.feature}: {_plural(changed, 'sample')} changed")
    return causes or [f"{_plural(stale.height, 'sample')} changed upstream"]


def _changed_fields(node: FeatureNode, increment: Increment, stored: pl.LazyFrame) -> str:
    """The fields whose provenance moved in the stale samples, as " (fields: a, b)"."""
    key = list(increment.key_columns)
    old = stored.select(*key, pl.col(c.PROVENANCE_BY_FIELD).alias("__old")).unique(key).collect()
    both = increment.stale.select(*key, c.PROVENANCE_BY_FIELD).unique(key).join(old, on=key)
    moved = [
        str(f.key)
        for f in node.spec.fields
        if both.filter(
            pl.col(c.PROVENANCE_BY_FIELD).struct.field(f.key.struct_key)
            != pl.col("__old").struct.field(f.key.struct_key)
        ).height
    ]
    return f" (fields: {', '.join(moved)})" if moved else ""
