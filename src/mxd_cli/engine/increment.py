"""Increment resolution: which samples of a feature are new, stale or orphaned.

``new``: expected samples not stored under the current feature version; ``stale``: stored
with a different ``metaxy_provenance``; ``orphaned``: stored but no longer expected. A
feature-version change therefore makes every sample new (nothing is compared across
versions), exactly as Metaxy does.

An increment is a set of queries (:class:`~mxd_cli.engine.plan.Compare`) and the counts
one aggregate over them gave; rows are fetched only when asked for — in record batches of
a chunk's size when an asset runs on them.

**Work proportional to what changed.** When a feature's last complete run left a
checkpoint (its feature version, the write marks of its own and its upstreams' tables, and
how many samples it held), only the samples touched since are resolved: the sample keys
of the upstream rows written or tombstoned since their marks, and of the feature's own rows
written since its mark (a crash, a delete). Every other sample is exactly as at the
checkpoint — stored, and unchanged — so the totals follow from the checkpoint's count and
the touched samples' before and after. The answer is the full resolve's, by construction
(and by the property tests); when a store cannot tell exactly which rows are new since a
mark (a rewritten table), everything is resolved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.plan import (
    CHANGE,
    LATEST_ROW_COLUMNS,
    Compare,
    ExpectedPlan,
    TableSource,
    current_rows,
    expands,
    expected_rows,
    narrowed,
    sample_key,
)
from mxd_cli.engine.restrictions import FeatureRestriction
from mxd_cli.engine.session import Session
from mxd_cli.engine.sql import alias, and_all, col, in_keys, lit
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureNode
from mxd_cli.store import columns as c

COUNTS = ("new", "stale", "orphaned", "unchanged", "stored")

# Narrowing pays while the touched samples are a small part of the feature.
_NARROW_LIMIT = 0.25


@dataclass(frozen=True)
class Baseline:
    """What a feature's last complete run left: the marks it was computed from."""

    own: str  # write mark of the feature's own table
    upstream: Mapping[FeatureKey, tuple[str, str]]  # (store name, write mark) per upstream
    stored: int  # samples held then (all of them up to date)


@dataclass
class Increment:
    """The work a feature needs: counts, and the queries that give its rows."""

    feature: FeatureKey
    key_columns: tuple[str, ...]
    compare: Compare
    counts: dict[str, int]
    session: Session
    narrowed: int | None = None  # samples resolved when narrowed to the changed ones
    columns: list[str] = field(default_factory=list)  # columns of the expected rows
    #: Aggregation deps' rows before grouping (what an N:1 asset computes from).
    members: dict[int, exp.Select] = field(default_factory=dict)
    #: Narrowed resolves: per upstream, every stored row of the touched samples (kept).
    upstream_rows: dict[FeatureKey, TableSource] = field(default_factory=dict)
    #: A root's fields whose provenance moved in its stale samples (None: not asked).
    moved_fields: tuple[str, ...] | None = None
    #: Narrowed resolves asked to explain: every stored row of the touched samples (kept),
    #: with their field provenance.
    own_rows: TableSource | None = None
    #: Narrowed resolves: the touched samples' keys and the source that touched each
    #: (see :class:`Touched`).
    touched: exp.Table | None = None
    #: An expansion's current child rows (the samples' physical rows), counted on demand.
    children: exp.Select | None = field(default=None, repr=False)
    _rows: pl.DataFrame | None = field(default=None, repr=False)
    _stored_rows: int | None = field(default=None, repr=False)

    @property
    def stored_rows(self) -> int:
        """Physical rows the stored samples hold: one each, or an expansion's children."""
        if self.children is None:
            return self.counts["stored"]
        if self._stored_rows is None:
            self._stored_rows = self.session.engine.count(self.children)
        return self._stored_rows

    @property
    def pending(self) -> bool:
        return bool(self.counts["new"] or self.counts["stale"] or self.counts["orphaned"])

    @property
    def to_write(self) -> int:
        return self.counts["new"] + self.counts["stale"]

    def batches(self, size: int, after: Sequence[object] | None = None) -> Iterator[pa.RecordBatch]:
        """New and stale rows in sample-key order, ``size`` rows per batch (the chunks an
        asset gets); ``after``: resume behind this sample key."""
        query = self.compare.to_compute(after)
        if query is None:
            return iter(())
        return self.session.engine.batches(query, size)

    def to_compute(self) -> pl.DataFrame:
        """New and stale rows together (``__mxd_change`` says which): for tests and small
        features — runs fetch :meth:`batches`. Fetched once."""
        if self._rows is None:
            query = self.compare.to_compute()
            self._rows = pl.DataFrame() if query is None else self.session.engine.frame(query)
        return self._rows

    def part(self, which: str) -> pl.DataFrame:
        """The rows of ``new``, ``stale`` or ``orphaned`` samples (tests, small features)."""
        if which == "orphaned":
            query = self.compare.orphans()
            return pl.DataFrame() if query is None else self.session.engine.frame(query)
        rows = self.to_compute()
        if rows.height == 0:
            return rows
        return rows.filter(pl.col(CHANGE) == which).drop(CHANGE)

    @property
    def new(self) -> pl.DataFrame:
        return self.part("new")

    @property
    def stale(self) -> pl.DataFrame:
        return self.part("stale")

    @property
    def orphaned(self) -> pl.DataFrame:
        return self.part("orphaned")


def resolve(
    session: Session,
    key: FeatureKey,
    *,
    samples: TableSource | None = None,
    restrict: FeatureRestriction | None = None,
    full: bool = False,
    baseline: Baseline | None = None,
    explain: bool = False,
    payload: bool = True,
) -> Increment:
    """Compare what a feature should hold with what its store holds.

    Root features need ``samples`` (every current sample, staged in the engine with its
    provenance); downstream features read their upstreams. ``restrict`` limits the
    comparison to a slice of the samples: samples outside it are neither expected nor
    orphaned. ``full``: every stored sample counts as stale. ``baseline``: the feature's
    checkpoint, so that only what changed since is resolved. ``explain``: a root's counts
    also find the fields whose provenance moved in its stale samples (``moved_fields``).
    ``payload=False``: the expected rows of a downstream feature carry no upstream column
    that neither a key nor a dep filter needs (counts and causes; never rows for an asset,
    and not with ``restrict``, whose conditions may name any column).
    """
    node = session.graph[key]
    skey = list(sample_key(node))
    found: Touched | None = None
    if baseline is not None and not node.is_root and restrict is None and not full:
        found = _touched(session, node, skey, baseline)
    touched = None if found is None else found.keys
    expected = _expected(
        session,
        node,
        samples,
        touched,
        payload=payload or restrict is not None,
        recent=None if found is None else found.recent,
    )
    query = expected.query if expected is not None else None
    if query is not None and restrict is not None:
        query = (
            exp.select("*")
            .from_(query.subquery("__mxd_all", copy=False))
            .where(restrict.expected.copy(), copy=False)
        )
    if query is not None and not node.is_root:
        # Counted, streamed and diffed: computed (joined, hashed) once.
        query = exp.select("*").from_(session.keep(key, query, "__mxd_expected"))
    own = session.locate(key)
    current = children = own_touched = None
    explaining = False
    if own is not None:
        table = own
        conditions: list[exp.Expr | None] = []
        whole = own  # every column: for the rows of orphans (tombstones copy them)
        if touched is not None:
            # The compare reads keys and provenance; whole rows only of orphans, if asked.
            # Read once, by key, for all that follows: the count of what the touched samples
            # were at the baseline, and (explaining) the stale samples' field provenance.
            whole = narrowed(own, list(own.schema.names), in_keys(skey, touched.copy()), None)
            why = [c.PROVENANCE_BY_FIELD] if explain else []
            own = own_touched = narrowed(
                own,
                [*skey, *node.spec.id_columns, c.PROVENANCE, *why, *LATEST_ROW_COLUMNS],
                in_keys(skey, touched),
                lambda q, prefix: session.keep(key, q, prefix),
            )
        if restrict is not None and restrict.current is not None:
            conditions.append(restrict.current.copy())
        elif restrict is not None:
            # The table lacks the columns: its samples in the slice are those expected there.
            inside = (
                exp.select(*(col(k) for k in skey)).from_(query.subquery("__mxd_in", copy=False))
                if query is not None
                else None
            )
            conditions.append(
                exp.false()
                if inside is None
                else in_keys(skey, inside.subquery("__mxd_inside", copy=False))
            )
        condition = and_all(conditions)
        extra = restrict.columns if restrict is not None else ()
        explaining = explain and node.is_root and c.PROVENANCE_BY_FIELD in own.schema.names
        if explaining:
            extra = (*extra, c.PROVENANCE_BY_FIELD)
        wanted = list(dict.fromkeys([*skey, c.PROVENANCE, *extra]))
        version = session.feature_version(key)
        if touched is None and _one_row_per_sample(session, node, baseline, table):
            # No rewritten sample, no tombstone, no other version: every row is current.
            alive = exp.and_(
                col(c.FEATURE_VERSION).eq(lit(version)), col(c.DELETED_AT).is_(exp.null())
            )
            current = (
                exp.select(*(col(n) for n in wanted))
                .from_(own.ref.copy())
                .where(alive if condition is None else exp.and_(alive, condition.copy()))
            )
        else:
            current = current_rows(own, node.spec.id_columns, version, wanted, where=condition)
        if expands(node):
            # Expansion: stored rows are children; any provenance among them stands for
            # the sample (they all carry the parent's).
            children = current
            if touched is not None:  # (narrowed: the totals take every child)
                children = current_rows(table, node.spec.id_columns, version, [*skey])
            current = (
                exp.select(
                    *(col(k) for k in skey),
                    alias(exp.func("max", col(c.PROVENANCE)), c.PROVENANCE),
                )
                .from_(current.subquery("__mxd_children", copy=False))
                .group_by(*(col(k) for k in skey), copy=False)
            )

        def own_rows(chosen: exp.Expr | None, whole: TableSource = whole) -> exp.Select:
            # Chosen samples: their rows found by key first, then the latest of them (not
            # the latest row of every sample of the table, all columns wide, then a filter).
            names = list(whole.schema.names)
            rows = whole if chosen is None else narrowed(whole, names, chosen, None)
            where = None if condition is None else condition.copy()
            return current_rows(
                rows, node.spec.id_columns, version, names, where=where, name="__mxd_o"
            )

    fields = tuple(f.key.struct_key for f in node.spec.fields) if explaining else ()
    compare = Compare(
        tuple(skey), query, current, None if own is None else own_rows, full=full,
        fields=fields, field_of=session.engine.field,
    )  # fmt: skip
    row = session.engine.rows(compare.counts())[0]
    counts = {name: int(value or 0) for name, value in zip(COUNTS, row[: len(COUNTS)], strict=True)}
    moved = None
    if fields and current is not None and query is not None:
        moved = tuple(
            str(f.key) for f, n in zip(node.spec.fields, row[len(COUNTS) :], strict=True) if n
        )
    resolved_on = None
    if touched is not None:
        assert baseline is not None
        resolved_on = counts["stored"] + counts["new"]
        before = _stored_before(session, node, skey, baseline, touched, own_touched)
        counts["stored"] += baseline.stored - before
        counts["unchanged"] += baseline.stored - before
    return Increment(
        key,
        tuple(skey),
        compare,
        counts,
        session,
        narrowed=resolved_on,
        columns=[] if expected is None else list(expected.columns),
        members={} if expected is None else dict(expected.members),
        upstream_rows={} if expected is None else dict(expected.upstream_rows),
        moved_fields=moved,
        children=children,
        own_rows=own_touched if explain else None,
        touched=touched,
    )


def _one_row_per_sample(
    session: Session, node: FeatureNode, baseline: Baseline | None, table: TableSource
) -> bool:
    """Whether the feature's table holds one row per current sample and nothing else: it
    is unchanged since a checkpoint that held as many samples as the table has rows (each
    sample has a row at the feature version, so no row is left for a rewrite, a
    tombstone or another version). The latest-row pass is then a plain filter."""
    if baseline is None or baseline.own == "" or expands(node):
        return False
    store = session.store
    if session.holder(node.key) is not store or store.write_mark(node.key.parts) != baseline.own:
        return False
    if c.FEATURE_VERSION not in table.schema.names or c.DELETED_AT not in table.schema.names:
        return False
    return session.engine.count(table.ref.copy()) == baseline.stored


def stored_rows(session: Session, node: FeatureNode) -> int | None:
    """Current physical rows of an expansion's table (None: not an expansion)."""
    if not expands(node):
        return None
    own = session.locate(node.key)
    if own is None:
        return 0
    version = session.feature_version(node.key)
    skey = list(sample_key(node))
    return session.engine.count(current_rows(own, node.spec.id_columns, version, skey))


def _expected(
    session: Session,
    node: FeatureNode,
    samples: TableSource | None,
    touched: exp.Expr | None,
    *,
    payload: bool = True,
    recent: Mapping[int, TableSource] | None = None,
) -> ExpectedPlan | None:
    if node.is_root:
        if samples is None:
            raise AssetError(f"{node.key} is a root feature: resolving it needs its samples")
        query = exp.select("*").from_(samples.ref, copy=False)
        return ExpectedPlan(query, list(samples.schema.names))
    return expected_rows(
        node,
        session.graph,
        session.locate,
        session.feature_version,
        session.engine,
        session.hashing,
        touched=touched,
        keep=lambda query, prefix: session.keep(node.key, query, prefix),
        payload=payload,
        recent=recent,
    )


@dataclass(frozen=True)
class Touched:
    """The samples touched since a baseline, and what their reading can skip."""

    #: Their keys, with ``__mxd_src``: the one source that touched a sample (a dep's
    #: index, or -1 for the feature's own table), or null when several did.
    keys: exp.Table
    #: Per dep index: the upstream's rows written since the mark, where they hold the
    #: current row of every touched sample (so the upstream's table need not be searched).
    recent: Mapping[int, TableSource]


#: The column of :attr:`Touched.keys` naming the source that touched a sample.
SOURCE = "__mxd_src"


def _touched(
    session: Session, node: FeatureNode, skey: Sequence[str], baseline: Baseline
) -> Touched | None:
    """Sample keys touched since the baseline, or None to resolve everything."""
    store = session.store
    parts: list[exp.Select] = []
    candidates: dict[int, tuple[TableSource, list[str], str]] = {}
    for i, dep in enumerate(node.spec.deps):
        holder = session.holder(dep.feature)
        then = baseline.upstream.get(dep.feature)
        if holder is not store or then is None or then[0] != store.name:
            return None  # a fallback's rows cannot be diffed in this engine
        changed = store.changed_since(dep.feature.parts, then[1])
        if changed is None:
            return None
        inverse = {new: old for old, new in (dep.rename or {}).items()}
        up_ids = session.graph[dep.feature].spec.id_columns
        sources = [inverse.get(k, k) for k in skey]
        if any(s not in up_ids for s in sources):
            return None
        source = session.locate(dep.feature)
        if source is not None and sorted(sources) == sorted(up_ids):
            # One upstream row per sample: when each touched sample's current row is among
            # the rows written since, they stand in for the table (read through the
            # stamps' zone maps, only the columns each query needs).
            recent = _relation(changed.copy(), "__mxd_recent")
            candidates[i] = (TableSource(recent, source.schema, source.store), sources, then[1])
        parts.append(
            exp.select(
                *(alias(col(s), k) for s, k in zip(sources, skey, strict=True)),
                alias(lit(i), SOURCE),
            ).from_(_relation(changed, "__mxd_changed"), copy=False)
        )
    if baseline.own != "" or store.has(node.key.parts):
        # (A feature that has never had a table, then or now, has no rows of its own that
        # could have changed: its upstreams' changes alone say what to resolve.)
        own = store.changed_since(node.key.parts, baseline.own)
        if own is None:
            return None
        parts.append(
            exp.select(*(col(k) for k in skey), alias(lit(-1), SOURCE)).from_(
                _relation(own, "__mxd_own_changed"), copy=False
            )
        )
    union: exp.Expr = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False, copy=False)
    one = exp.case().when(
        exp.func("min", col(SOURCE)).eq(exp.func("max", col(SOURCE))), exp.func("min", col(SOURCE))
    )
    keys = (
        exp.select(*(col(k) for k in skey), alias(one, SOURCE))
        .from_(_relation(union, "__mxd_t"), copy=False)
        .group_by(*(col(k) for k in skey), copy=False)
    )
    table = session.keep(node.key, keys, "__mxd_touched")
    count = session.engine.count(table)
    if baseline.stored and count > _NARROW_LIMIT * baseline.stored:
        return None  # most samples changed: one full pass is cheaper
    return Touched(table, _recent(session, node, skey, table, candidates))


def _recent(
    session: Session,
    node: FeatureNode,
    skey: Sequence[str],
    touched: exp.Table,
    candidates: Mapping[int, tuple[TableSource, list[str], str]],
) -> dict[int, TableSource]:
    """The candidates whose rows written since the mark hold, for every touched sample,
    a row at the upstream's feature version later than all rows held at the mark: that
    row's sample has its current row among them (the later rows are all there)."""
    recent: dict[int, TableSource] = {}
    for i, (rows, sources, mark) in candidates.items():
        dep = node.spec.deps[i]
        version = col(c.FEATURE_VERSION).eq(lit(session.feature_version(dep.feature)))
        if c.FEATURE_VERSION not in rows.schema.names:
            continue
        # (Asked only now: a backend may have to read the stamps held at the mark.)
        later = session.store.later_than_mark(dep.feature.parts, mark)
        if later is None:
            continue
        found = (
            exp.select(*(alias(col(s), k) for s, k in zip(sources, skey, strict=True)))
            .from_(rows.ref.copy())
            .where(exp.and_(version, later.copy()), copy=False)
        )
        missing = (
            exp.select("*")
            .from_(touched.copy())
            .join(
                found.subquery("__mxd_found", copy=False), using=tuple(skey), join_type="left anti"
            )
        )
        if session.engine.count(missing) == 0:
            recent[i] = rows
    return recent


def _stored_before(
    session: Session,
    node: FeatureNode,
    skey: Sequence[str],
    baseline: Baseline,
    touched: exp.Expr,
    own_touched: TableSource | None,
) -> int:
    """How many touched samples the feature held at the baseline (out of their rows read
    already, ``own_touched``, where the store tells the rows written since by a column)."""
    own = session.locate(node.key)
    if own is None or baseline.own == "":  # ("": the table did not exist then)
        return 0
    table = node.key.parts
    newer = session.store.written_after(table, baseline.own)  # (no I/O: the mark itself)
    where: exp.Expr | None = None
    if own_touched is not None and newer is not None:
        before: exp.Expr = exp.select("*").from_(own_touched.ref.copy()).where(exp.not_(newer))
        schema = own_touched.schema
    else:
        found = session.store.rows_before(table, baseline.own)
        if found is None:  # (changed_since answered for this mark, so this cannot be)
            raise AssertionError("rows before a mark are unknown")
        before, schema, where = found, own.schema, in_keys(list(skey), touched)
    source = TableSource(_relation(before, "__mxd_before"), schema, own.store)
    rows = current_rows(
        source,
        node.spec.id_columns,
        session.feature_version(node.key),
        list(skey),
        where=where,
        name="__mxd_b",
    )
    return session.engine.count(rows, distinct=skey)


def _relation(query: exp.Expr, name: str) -> exp.Expr:
    """``query`` as something to select from."""
    if isinstance(query, (exp.Table, exp.Subquery)):
        return query
    assert isinstance(query, exp.Query)
    return query.subquery(name, copy=False)


__all__ = ["COUNTS", "SOURCE", "Baseline", "Increment", "Touched", "lit", "resolve", "stored_rows"]
