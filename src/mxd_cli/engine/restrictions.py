"""Row restrictions (``--filter``, ``--keys``, ``--partition``) compiled per feature.

One compiler for every command. A restriction names columns; a feature whose expected
rows carry them is restricted by the condition itself, type-checked against those
columns' types (``price = 'x'`` on a number is the same exit-2 error everywhere). A
feature that lacks them follows lineage: it is restricted to the samples derived, through
its dependencies' join keys, from the restricted samples of its upstreams — so one
restricted run is a consistent slice of the pipeline. A feature that can be related to
the restriction neither way is an error naming it, before anything is written.

Stored rows are restricted the same way: by the condition where the feature's table has
the columns, else to the sample keys of the restricted expected rows (so a sample outside
the slice is never reported as orphaned).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.filters import Filter, parse_filters
from mxd_cli.engine.plan import TableSource, current_rows, expands, join_key, sample_key
from mxd_cli.engine.sql import and_all, col, in_keys, lit
from mxd_cli.errors import FilterError, did_you_mean
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store.columns import polars_types


@dataclass(frozen=True)
class RestrictionSpec:
    """What the user asked for (texts as given; checked when compiled).

    ``keys``: each value either lists ids of a single id column (``"a,b,c"``) or names one
    sample by its id columns (``"doc=d1,k=3"``). ``sample``: ``(n, seed)``, the n root
    samples with the smallest seeded hash of their keys.
    """

    filters: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    partition: tuple[str, str] | None = None
    sample: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.filters or self.keys or self.partition or self.sample)

    def _single_ids(self) -> list[str]:
        return [k.strip() for v in self.keys if "=" not in v for k in v.split(",") if k.strip()]

    def _samples(self) -> list[dict[str, str]]:
        found = []
        for value in self.keys:
            if "=" not in value:
                continue
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            found.append({k.strip(): v.strip() for k, v in pairs})
        return found

    def columns_of(self, node: FeatureNode) -> set[str]:
        """Columns the restriction names for ``node`` (a column it cannot have, for a
        restriction it can only follow through its upstreams)."""
        names: set[str] = set()
        if self.filters:
            parsed = parse_filters(list(self.filters))
            assert parsed is not None
            names |= set(parsed.columns)
        if self._single_ids():
            ids = node.spec.id_columns
            names.add(ids[0] if len(ids) == 1 else "<one id column>")
        for sample in self._samples():
            names |= set(sample)
        if self.partition is not None:
            names.add(self.partition[0])
        if self.sample is not None and not node.is_root:
            names.add("<root samples>")
        return names

    def condition(
        self, node: FeatureNode, types: Mapping[str, object], rows: exp.Expr | None = None
    ) -> exp.Expr:
        """The restriction as SQL over columns of these types (all of them present);
        ``rows``: the relation the sample is drawn from (a root's samples)."""
        parts: list[exp.Expr | None] = []
        if self.filters:
            parsed: Filter | None = parse_filters(list(self.filters), types)
            assert parsed is not None
            parts.append(parsed.to_sqlglot())
        ids = self._single_ids()
        if ids:
            ident = node.spec.id_columns[0]
            parts.append(
                exp.In(this=exp.cast(col(ident), "VARCHAR"), expressions=[lit(k) for k in ids])
            )
        samples = self._samples()
        if samples:
            parts.append(
                exp.or_(
                    *(
                        and_all([exp.cast(col(k), "VARCHAR").eq(lit(v)) for k, v in s.items()])
                        for s in samples
                    )
                )
            )
        if self.partition is not None:
            column, value = self.partition
            parts.append(exp.cast(col(column), "VARCHAR").eq(lit(value)))
        if self.sample is not None and rows is not None:
            parts.append(self._sampled(node, rows))
        found = and_all(parts)
        assert found is not None
        return found

    def _sampled(self, node: FeatureNode, rows: exp.Expr) -> exp.Expr:
        """Keys of the n samples of ``rows`` with the smallest sha256(seed|keys)."""
        assert self.sample is not None
        n, seed = self.sample
        keys = list(sample_key(node))
        text = exp.Anonymous(
            this="concat_ws",
            expressions=[lit("|"), lit(str(seed)), *(exp.cast(col(k), "VARCHAR") for k in keys)],
        )
        picked = (
            exp.select(*(col(k) for k in keys))
            .from_(rows)
            .order_by(exp.func("sha256", text))
            .limit(n)
        )
        return in_keys(keys, picked.subquery("__mxd_sampled"))


@dataclass(frozen=True)
class FeatureRestriction:
    """The restriction of one feature: on its expected rows and on its stored rows."""

    expected: exp.Expr  # over the expected rows' columns
    columns: tuple[str, ...] = ()  # stored columns the ``current`` condition reads
    current: exp.Expr | None = None  # over stored rows (None: by expected keys)
    via: tuple[FeatureKey, ...] = ()  # upstreams it follows (empty: the columns are its own)


class Unrelated(FilterError):
    """A feature that neither has the restriction's columns nor follows it through an
    upstream: skipped by runs and status (an error when no selected feature relates)."""


class Restrictions:
    """Per-feature restrictions of one command, compiled in topological order."""

    def __init__(
        self,
        spec: RestrictionSpec,
        graph: FeatureGraph,
        locate: Callable[[FeatureKey], TableSource | None] | None = None,
    ) -> None:
        self.spec = spec
        self.graph = graph
        self.by_feature: dict[FeatureKey, FeatureRestriction] = {}
        # Per compiled feature: its table then, its feature version, a root's sample pool.
        self._stored: dict[FeatureKey, tuple[TableSource | None, str, exp.Expr | None]] = {}
        # A feature's own table as it is now: an upstream written (or, in a dry run,
        # staged) since it was compiled is followed with its new rows.
        self.locate = locate

    def compile(
        self,
        node: FeatureNode,
        expected_types: Mapping[str, object],
        stored: TableSource | None,
        feature_version: str,
        rows: exp.Expr | None = None,
    ) -> FeatureRestriction:
        """The restriction of ``node`` given its expected rows' column types and its stored
        table (its upstreams compiled before it); ``rows``: a root's samples this run.

        Where the expected rows carry the columns but the stored table does not (columns
        passed on from an upstream), the restriction follows lineage when it can: that
        condition reads join keys only, so it holds on stored rows too and features below
        can follow it in turn."""
        wanted = self.spec.columns_of(node)
        missing = wanted - set(expected_types)
        stored_has = stored is not None and wanted <= set(stored.schema.names)
        found: FeatureRestriction | None = None
        if missing or (wanted and not stored_has and node.spec.deps):
            try:
                found = self._through_lineage(node, missing or wanted, list(expected_types))
            except Unrelated:
                if missing:
                    if stored is None or not stored_has or not expands(node):
                        raise
                    found = self._by_children(node, stored, feature_version)
        if found is None:
            pool = rows
            if pool is None and self.spec.sample is not None and stored is not None:
                pool = current_rows(
                    stored, node.spec.id_columns, feature_version, node.spec.id_columns
                ).subquery("__mxd_pool", copy=False)
            condition = self.spec.condition(node, expected_types, pool)
            current = None
            columns: tuple[str, ...] = ()
            if stored is not None and stored_has:
                current = self.spec.condition(node, types_of(stored.schema), pool)
                columns = tuple(sorted(wanted))
            found = FeatureRestriction(condition, columns, current)
        self.by_feature[node.key] = found
        self._stored[node.key] = (stored, feature_version, rows)
        return found

    def _through_lineage(
        self, node: FeatureNode, missing: set[str], columns: list[str]
    ) -> FeatureRestriction:
        conditions: list[exp.Expr] = []
        via: list[FeatureKey] = []
        for dep in node.spec.deps:
            keys = self.slice_keys(dep.feature)
            if keys is None:
                continue
            up_ids = self.graph[dep.feature].spec.id_columns
            rename = dict(dep.rename or {})
            ours = {k: rename.get(k, k) for k in up_ids}
            joined = join_key(node, dep)
            if not set(joined) <= set(ours.values()):
                continue
            picked = exp.select(
                *(
                    exp.alias_(col(k), ours[k], quoted=True, copy=False)
                    for k in up_ids
                    if ours[k] in joined
                )
            ).from_(keys.subquery("__mxd_slice", copy=False))
            conditions.append(in_keys(joined, picked.subquery("__mxd_slice_keys", copy=False)))
            via.append(dep.feature)
        if not conditions:
            column = sorted(missing)[0]
            if column.startswith("<"):
                raise Unrelated(
                    f"feature {node.key} cannot be related to the restriction",
                    hint="--keys with bare ids applies to features with one id column, "
                    "--sample to root features; others follow them through their deps",
                )
            partition = self.spec.partition
            what = "partition" if partition is not None and partition[0] == column else "filter"
            lineage = (
                " (and no upstream it could follow the restriction through)"
                if node.spec.deps
                else ""
            )
            raise Unrelated(
                f"{what} column {column!r} is not a column of feature {node.key}{lineage}",
                hint=did_you_mean(column, columns)
                or "select the features the restriction applies to, or restrict on a "
                "column they (or their upstreams) have",
            )
        condition = and_all(conditions)
        assert condition is not None
        # Join keys only: the same condition holds on the feature's stored rows.
        return FeatureRestriction(condition, (), condition, tuple(via))

    def _by_children(
        self, node: FeatureNode, stored: TableSource, feature_version: str
    ) -> FeatureRestriction:
        """An expansion restricted on its children's columns (which its expected rows, the
        parents, lack): the parents of the stored children inside the slice, whole."""
        keys = list(sample_key(node))
        rows = current_rows(
            stored,
            node.spec.id_columns,
            feature_version,
            list(stored.schema.names),
            name="__mxd_ch",
        )
        parents = (
            exp.select(*(col(k) for k in keys))
            .from_(rows.subquery("__mxd_children", copy=False))
            .where(self.spec.condition(node, types_of(stored.schema)), copy=False)
            .distinct(copy=False)
        )
        condition = in_keys(keys, parents.subquery("__mxd_parents", copy=False))
        return FeatureRestriction(condition, (), condition.copy())

    def slice_keys(self, key: FeatureKey) -> exp.Select | None:
        """Id columns of ``key``'s stored rows inside the slice (None: it has none, or
        they cannot be told from its stored rows)."""
        found = self.by_feature.get(key)
        if found is None:
            return None
        source, version, pool = self._stored[key]
        if self.locate is not None:
            source = self.locate(key)
        if source is None:
            return None
        node = self.graph[key]
        where = found.current
        if where is None and not found.via:
            # Its own columns, absent from its table when compiled (written since?).
            if not self.spec.columns_of(node) <= set(source.schema.names):
                return None
            where = self.spec.condition(node, types_of(source.schema), pool)
        if where is None:
            return None
        rows = current_rows(
            source, node.spec.id_columns, version, list(source.schema.names), name="__mxd_sl"
        )
        return (
            exp.select(*(col(k) for k in node.spec.id_columns))
            .from_(rows.subquery("__mxd_sl_rows", copy=False))
            .where(where.copy(), copy=False)
            .distinct(copy=False)
        )


def types_of(schema: pa.Schema) -> dict[str, object]:
    """Polars types of an Arrow schema (what the filter compiler checks against)."""
    return dict(polars_types(schema))
