"""Deleting samples: plan which current rows match (and what derives from them), then write.

A plan is computed from the store as it is, and filters apply after the latest-row choice.
A soft delete considers the current rows of each named feature at its current feature
version (the latest row per id, tombstones dropped). A hard delete purges history, so it
considers the latest row of every id the table holds — under any feature version, and
soft-deleted ones too (a tombstone keeps the user columns): soft-deleting rows and later
hard-deleting with the same filter, or ``--all``, leaves nothing of them behind.
``cascade`` follows the graph downstream in topological order: a downstream row is derived
from a matched sample when its dependency's join key — the downstream id columns for
identity lineage, the lineage's ``on`` columns for aggregation and expansion — equals the
matched sample's (after the dependency's ``rename``).

Executing is one store operation per feature, so each feature's delete is all or nothing:
a soft delete appends one batch of tombstones; a hard delete rewrites the table once
without any row (any version, any history) of the matched ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.spec import FeatureDep
from mxd_cli.engine.filters import Filter, parse_filters
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore, now_utc
from mxd_cli.versioning import GraphVersions

Mode = Literal["soft", "hard"]


def filter_columns(
    node: FeatureNode, store: MetadataStore
) -> Mapping[str, pl.DataType] | list[str]:
    """The columns a filter on ``node`` may name: the stored schema (with its types), or,
    for a feature not stored yet, the declared ids and columns plus the system columns."""
    stored = store.scan(node.key.parts)
    if stored is not None:
        return dict(stored.collect_schema())
    return [*node.spec.id_columns, *node.definition.columns, *c.SYSTEM_COLUMNS]


def parse_feature_filters(
    node: FeatureNode, texts: Sequence[str], store: MetadataStore
) -> Filter | None:
    """Check ``texts`` against the feature's columns (a FilterError names any problem)."""
    if not texts:
        return None
    return parse_filters(list(texts), filter_columns(node, store))


@dataclass(frozen=True)
class FeatureDeletion:
    """The current rows of one feature a delete removes, and why they were chosen."""

    feature: FeatureKey
    id_columns: tuple[str, ...]
    rows: pl.DataFrame  # the matched current rows, one per id
    targeted: bool  # named on the command line (else reached by the cascade)
    cascade_from: tuple[FeatureKey, ...] = ()  # upstreams whose matched samples it derives from
    physical_rows: int = 0  # rows a hard delete removes (every version and history row)

    @property
    def matched(self) -> int:
        return self.rows.height

    def ids(self) -> pl.DataFrame:
        return self.rows.select(self.id_columns).unique()


@dataclass(frozen=True)
class DeletionPlan:
    mode: Mode
    features: list[FeatureDeletion] = field(default_factory=list)


def _id_match(ids: pl.DataFrame, id_columns: Sequence[str]) -> pl.Expr:
    """True for rows whose ids are among ``ids`` (one expression, any number of id columns)."""
    wanted = ids.select(pl.struct(list(id_columns)).alias("__ids")).to_series().implode()
    return pl.struct(list(id_columns)).is_in(wanted)


def _candidates(
    store: MetadataStore, node: FeatureNode, versions: GraphVersions, mode: Mode
) -> pl.LazyFrame | None:
    """The latest row per id a delete chooses from (see the module docstring)."""
    if mode == "hard":
        return store.read(node.key.parts, node.spec.id_columns, include_deleted=True)
    return store.read(
        node.key.parts,
        node.spec.id_columns,
        feature_version=versions.feature_version(node.key),
    )


def plan_deletion(
    graph: FeatureGraph,
    versions: GraphVersions,
    store: MetadataStore,
    targets: Mapping[FeatureKey, Filter | None],
    *,
    mode: Mode = "soft",
    cascade: bool = False,
) -> DeletionPlan:
    """Which current rows a delete removes, per feature, in topological order.

    ``targets`` maps each named feature to its filter (None: every current row).
    """
    involved = set(targets)
    if cascade:
        for key in targets:
            involved |= graph.downstream_closure(key)
    matched: dict[FeatureKey, FeatureDeletion] = {}
    for key in (k for k in graph.order if k in involved):
        node = graph[key]
        current = _candidates(store, node, versions, mode)
        rows: pl.DataFrame = pl.DataFrame()
        via: tuple[FeatureKey, ...] = ()
        if current is not None:
            picks, via = _derived(node, current, matched) if cascade else ([], ())
            if key in targets:
                flt = targets[key]
                picks.insert(0, current if flt is None else current.filter(flt.to_polars()))
            if picks:
                ids = list(node.spec.id_columns)
                chosen = pl.concat(picks).unique(subset=ids, keep="any", maintain_order=True)
                rows = chosen.collect()
        physical = 0
        if mode == "hard" and rows.height:
            physical = _physical_rows(store, node, rows)
        matched[key] = FeatureDeletion(
            key, node.spec.id_columns, rows, key in targets, via, physical
        )
    return DeletionPlan(mode, [matched[k] for k in graph.order if k in matched])


def _shared_key(node: FeatureNode, dep: FeatureDep) -> list[str]:
    # The columns a dependency joins on (as the upstream join does): the ids for identity
    # lineage, the lineage's ``on`` columns for aggregation and expansion.
    return list(node.spec.id_columns) if dep.lineage.kind == "1:1" else list(dep.lineage.on or ())


def _derived(
    node: FeatureNode,
    current: pl.LazyFrame,
    matched: Mapping[FeatureKey, FeatureDeletion],
) -> tuple[list[pl.LazyFrame], tuple[FeatureKey, ...]]:
    """Current rows of a downstream feature derived from samples matched upstream, per dep."""
    schema = current.collect_schema()
    picks: list[pl.LazyFrame] = []
    via: list[FeatureKey] = []
    for dep in node.spec.deps:
        source = matched.get(dep.feature)
        if source is None or source.matched == 0:
            continue
        upstream = source.rows.rename(dict(dep.rename or {}), strict=False)
        key = [k for k in _shared_key(node, dep) if k in upstream.columns and k in schema]
        if not key:
            continue
        keys = upstream.select([pl.col(k).cast(schema[k]) for k in key]).unique()
        picks.append(current.join(keys.lazy(), on=key, how="semi"))
        via.append(dep.feature)
    return picks, tuple(via)


def _physical_rows(store: MetadataStore, node: FeatureNode, rows: pl.DataFrame) -> int:
    everything = store.scan(node.key.parts)
    if everything is None:
        return 0
    ids = rows.select(node.spec.id_columns).unique()
    match = _id_match(ids, node.spec.id_columns)
    count: int = everything.filter(match).select(pl.len()).collect().item()
    return count


@dataclass(frozen=True)
class DeletionResult:
    """What a delete did to one feature: samples matched and deleted, physical rows touched
    (tombstones appended by a soft delete, rows removed by a hard one)."""

    feature: FeatureKey
    matched: int
    deleted: int
    rows: int


def execute_deletion(
    plan: DeletionPlan,
    store: MetadataStore,
    versions: GraphVersions,
    *,
    at: datetime | None = None,
) -> list[DeletionResult]:
    """Write a plan: one append (soft) or one rewrite (hard) per feature, in plan order."""
    stamp = at or now_utc()
    results = []
    for item in plan.features:
        if item.matched == 0:
            results.append(DeletionResult(item.feature, 0, 0, 0))
            continue
        table = item.feature.parts
        if plan.mode == "soft":
            written = store.soft_delete(
                table,
                item.rows,
                feature_version=versions.feature_version(item.feature),
                project_version=versions.project_version,
                at=stamp,
            )
            results.append(DeletionResult(item.feature, item.matched, written, written))
        else:
            keep = ~_id_match(item.ids(), item.id_columns)
            removed = store.hard_delete(table, keep)
            results.append(DeletionResult(item.feature, item.matched, item.matched, removed))
    return results
