"""Deleting samples: plan which current rows match (and what derives from them), then write.

A plan is computed from the store as it is, in its engine, and filters apply after the
latest-row choice. A soft delete considers the current rows of each named feature at its
current feature version (the latest row per id, tombstones dropped). A hard delete purges
history, so it considers the latest row of every id the table holds — under any feature
version, and soft-deleted ones too (a tombstone keeps the user columns): soft-deleting rows
and later hard-deleting with the same filter, or ``--all``, leaves nothing of them behind.
``cascade`` follows the graph downstream in topological order: a downstream row is derived
from a matched sample when its dependency's join key — the downstream id columns for
identity lineage, the lineage's ``on`` columns for aggregation and expansion — equals the
matched sample's (after the dependency's ``rename``).

The matched ids of each feature are kept in a temporary table of the engine; executing is
one store operation per feature, so each feature's delete is all or nothing: a soft delete
appends one batch of tombstones (written from SQL); a hard delete removes every row (any
version, any history) of the matched ids in one commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.spec import FeatureDep
from mxd_cli.engine.filters import Filter, parse_filters
from mxd_cli.engine.plan import TableSource, expands, narrowed, sample_key
from mxd_cli.engine.restrictions import types_of
from mxd_cli.engine.sql import alias, col, in_keys, lit
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore, Table, latest_rows, now_utc, tombstones
from mxd_cli.store.sql_engine import SqlEngine
from mxd_cli.versioning import GraphVersions

Mode = Literal["soft", "hard"]


def parse_feature_filters(
    node: FeatureNode, texts: Sequence[str], store: MetadataStore
) -> Filter | None:
    """Check ``texts`` against the feature's stored columns and their types (or, for a
    feature not stored yet, its declared ids and columns); a FilterError names any problem."""
    if not texts:
        return None
    schema = store.schema(node.key.parts)
    if schema is not None:
        return parse_filters(list(texts), types_of(schema))
    return parse_filters(
        list(texts), [*node.spec.id_columns, *node.definition.columns, *c.SYSTEM_COLUMNS]
    )


@dataclass(frozen=True)
class FeatureDeletion:
    """The current rows of one feature a delete removes, and why they were chosen."""

    feature: FeatureKey
    id_columns: tuple[str, ...]
    matched: int  # samples (distinct sample keys: an expansion's parents)
    targeted: bool  # named on the command line (else reached by the cascade)
    cascade_from: tuple[FeatureKey, ...] = ()  # upstreams whose matched samples it derives from
    physical_rows: int = 0  # rows a hard delete removes (every version and history row)
    current: int = 0  # current rows matched (distinct ids): the tombstones of a soft delete
    keys: exp.Table | None = None  # the matched ids, in a temporary table of the engine
    columns: tuple[str, ...] = ()  # the table's columns

    def ids(self, store: MetadataStore) -> pl.DataFrame:
        """The matched ids (from ``store``'s engine, where the plan was made)."""
        if self.keys is None:
            return pl.DataFrame()
        return store.engine().frame(exp.select("*").from_(self.keys))


@dataclass(frozen=True)
class DeletionPlan:
    mode: Mode
    features: list[FeatureDeletion] = field(default_factory=list)


def _candidates(
    store: MetadataStore,
    node: FeatureNode,
    versions: GraphVersions,
    mode: Mode,
    columns: list[str],
    *,
    within: exp.Expr | None = None,
) -> exp.Select | None:
    """The latest row per id a delete chooses from (see the module docstring).

    ``within``: a condition on rows; only ids with a row meeting it are considered. Every
    row of those ids is read (their latest row is the same as in the whole table), and
    nothing else: a filter that matches 1% of the ids reads 1% of the rows, after one scan
    of the columns it names.
    """
    table = store.ref(node.key.parts)
    if table is None:
        return None
    rows: exp.Expr = table
    if within is not None:
        ids = list(node.spec.id_columns)
        some = exp.select(*(col(k) for k in ids)).from_(table.copy()).where(within, copy=False)
        source = _source(store, node.key.parts, table)
        rows = narrowed(source, columns, in_keys(ids, some.subquery("__mxd_some")), None).ref
    where = None
    if mode == "soft":
        where = col(c.FEATURE_VERSION).eq(lit(versions.feature_version(node.key)))
    return latest_rows(
        rows, node.spec.id_columns, columns, where=where, include_deleted=mode == "hard"
    )


def _source(store: MetadataStore, table: Table, ref: exp.Expr) -> TableSource:
    """A table of ``store`` (``ref``, as the store names it) for a narrowed read."""
    schema = store.schema(table)
    assert schema is not None
    return TableSource(ref, schema, store.name, row_ids=store.row_addressable(table))


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
    engine = store.engine()
    involved = set(targets)
    if cascade:
        for key in targets:
            involved |= graph.downstream_closure(key)
    matched: dict[FeatureKey, FeatureDeletion] = {}
    for key in (k for k in graph.order if k in involved):
        node = graph[key]
        schema = store.schema(key.parts)
        columns = [] if schema is None else list(schema.names)
        current = None if schema is None else _candidates(store, node, versions, mode, columns)
        ids = list(node.spec.id_columns)
        picks: list[exp.Select] = []
        via: tuple[FeatureKey, ...] = ()
        if current is not None:
            if cascade:
                picks, via = _derived(node, current, columns, matched)
            if key in targets:
                flt = targets[key]
                chosen_from = current
                if flt is not None:  # (an id whose latest row matches has a row that does)
                    narrow = _candidates(
                        store, node, versions, mode, columns, within=flt.to_sqlglot()
                    )
                    assert narrow is not None
                    chosen_from = narrow
                chosen = exp.select(*(col(k) for k in ids)).from_(
                    chosen_from.subquery("__mxd_cur", copy=False)
                )
                if flt is not None:
                    chosen = chosen.where(flt.to_sqlglot(), copy=False)
                picks.insert(0, chosen)
        found = current_ids = 0
        physical = 0
        keys_table = None
        if picks:
            union: exp.Query = picks[0]
            for pick in picks[1:]:
                union = exp.union(union, pick, distinct=False, copy=False)
            distinct = (
                exp.select(*(col(k) for k in ids))
                .from_(union.subquery("__mxd_u", copy=False))
                .distinct(copy=False)
            )
            keys_table = _keep(engine, distinct)
            current_ids = found = engine.count(keys_table)
            if found and expands(node):
                found = engine.count(keys_table.copy(), distinct=sample_key(node))
            if mode == "hard" and found:
                ref = store.ref(key.parts)
                assert ref is not None
                physical = engine.count(
                    exp.select(exp.Star()).from_(ref, copy=False).where(in_keys(ids, keys_table))
                )
        matched[key] = FeatureDeletion(
            key,
            node.spec.id_columns,
            found,
            key in targets,
            via,
            physical,
            current_ids,
            keys_table,
            tuple(columns),
        )
    return DeletionPlan(mode, [matched[k] for k in graph.order if k in matched])


def _keep(engine: SqlEngine, query: exp.Select) -> exp.Table:
    """Materialize ``query`` in a temporary table (the plan reads it several times)."""
    return engine.materialize(query, prefix="__mxd_deleted")


def _shared_key(node: FeatureNode, dep: FeatureDep) -> list[str]:
    # The columns a dependency joins on (as the upstream join does): the ids for identity
    # lineage, the lineage's ``on`` columns for aggregation and expansion.
    return list(node.spec.id_columns) if dep.lineage.kind == "1:1" else list(dep.lineage.on or ())


def _derived(
    node: FeatureNode,
    current: exp.Select,
    columns: Sequence[str],
    matched: Mapping[FeatureKey, FeatureDeletion],
) -> tuple[list[exp.Select], tuple[FeatureKey, ...]]:
    """Ids of a downstream feature's current rows derived from samples matched upstream."""
    picks: list[exp.Select] = []
    via: list[FeatureKey] = []
    ids = list(node.spec.id_columns)
    for dep in node.spec.deps:
        source = matched.get(dep.feature)
        if source is None or source.matched == 0 or source.keys is None:
            continue
        rename = dict(dep.rename or {})
        upstream = {rename.get(k, k): k for k in source.id_columns}
        key = [k for k in _shared_key(node, dep) if k in upstream and k in columns]
        if not key:
            continue
        theirs = exp.select(*(alias(col(upstream[k]), k) for k in key)).from_(
            source.keys, copy=False
        )
        picks.append(
            exp.select(*(col(k) for k in ids))
            .from_(current.subquery("__mxd_cur", copy=False))
            .where(in_keys(key, theirs.subquery("__mxd_up", copy=False)))
        )
        via.append(dep.feature)
    return picks, tuple(via)


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
    """Write a plan: one append (soft) or one delete (hard) per feature, in plan order."""
    stamp = at or now_utc()
    results = []
    for item in plan.features:
        if item.matched == 0 or item.keys is None:
            results.append(DeletionResult(item.feature, 0, 0, 0))
            continue
        table = item.feature.parts
        ids = list(item.id_columns)
        if plan.mode == "soft":
            ref = store.ref(table)
            assert ref is not None
            node_columns = list(item.columns)
            # Only the matched ids' rows (every one of them: their latest rows are these).
            source = _source(store, table, ref)
            theirs = narrowed(source, node_columns, in_keys(ids, item.keys), None)
            current = latest_rows(
                theirs.ref,
                ids,
                node_columns,
                where=col(c.FEATURE_VERSION).eq(lit(versions.feature_version(item.feature))),
            )
            rows = (
                exp.select("*")
                .from_(current.subquery("__mxd_cur", copy=False))
                .where(in_keys(ids, item.keys), copy=False)
            )
            written = store.append_query(
                table,
                tombstones(
                    rows.subquery("__mxd_gone", copy=False),
                    node_columns,
                    feature_version=versions.feature_version(item.feature),
                    project_version=versions.project_version,
                    at=stamp,
                    materialization_id=None,
                ),
            )
            deleted = item.matched if written else 0  # (every matched id's row, at once)
            results.append(DeletionResult(item.feature, item.matched, deleted, written))
        else:
            removed = store.delete_where(table, in_keys(ids, item.keys))
            results.append(DeletionResult(item.feature, item.matched, item.matched, removed))
        store.refresh(table)
    return results


__all__ = [
    "DeletionPlan",
    "DeletionResult",
    "FeatureDeletion",
    "execute_deletion",
    "pa",
    "plan_deletion",
]
