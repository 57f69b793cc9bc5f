"""A session: one project, its target store and fallbacks, and one SQL engine for them.

Every command works through a session. It knows where each feature's table is — the
target store, or else the first fallback store that has it, attached to the target's
engine so one query can join across them — and what each table holds (schema, write
mark). Increments are resolved through it (:mod:`mxd_cli.engine.increment`).

**Served features.** A feature the target store does not hold, but a fallback does, is
*served* by that fallback: its increment is measured against the fallback's rows, so a
fresh branch store over prod finds nothing to do where nothing differs, and reads (by
mxd, and by Metaxy, which falls back per feature) see prod's complete table. When the
branch must change such a feature, it first *adopts* it (:meth:`Session.adopt`): the
fallback's rows are copied into the target in one commit, and from then on the feature is
the target's own, complete table, as Metaxy expects a feature table to be.

Example::

    with open_store(config) as store:
        session = Session(project.graph, project.versions, store, hashing=HashSettings("xxhash32", 8), project="demo")
        increment = resolve(session, FeatureKey.parse("demo/clean"))
        increment.counts
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.plan import HashSettings, TableSource
from mxd_cli.graph import FeatureGraph
from mxd_cli.store.base import MetadataStore
from mxd_cli.store.sql_engine import SqlEngine
from mxd_cli.versioning import GraphVersions

Binding = tuple[MetadataStore, Callable[[tuple[str, ...]], "exp.Table | None"]]


class Session:
    """The stores a command reads and writes, seen from one engine."""

    def __init__(
        self,
        graph: FeatureGraph,
        versions: GraphVersions,
        store: MetadataStore,
        fallbacks: Sequence[MetadataStore] = (),
        *,
        hashing: HashSettings,
        project: str,
    ) -> None:
        self.graph = graph
        self.versions = versions
        self.store = store
        self.fallbacks = list(fallbacks)
        self.hashing = hashing
        self.project = project
        self._bindings: list[Binding] | None = None
        self._sources: dict[FeatureKey, TableSource | None] = {}
        self._holder: dict[FeatureKey, MetadataStore | None] = {}
        self._kept: dict[FeatureKey, list[exp.Table]] = {}
        self._adopted: set[FeatureKey] = set()

    @property
    def engine(self) -> SqlEngine:
        return self.store.engine()

    def feature_version(self, key: FeatureKey) -> str:
        return self.versions.feature_version(key)

    def _bound(self) -> list[Binding]:
        if self._bindings is None:
            bindings: list[Binding] = [(self.store, self.store.ref)]
            for n, fallback in enumerate(self.fallbacks):
                bindings.append((fallback, fallback.bind(self.engine, f"__mxd_fallback_{n}")))
            self._bindings = bindings
        return self._bindings

    def locate(self, key: FeatureKey, *, side: bool = False) -> TableSource | None:
        """Where ``key``'s rows are — for reading it as an upstream and for measuring its
        own increment alike: the target store's table, else the first fallback's that has
        it (a served feature), unless the feature was adopted here. ``side``: probe on a
        cursor of its own (while a stream of the engine is open)."""
        if key not in self._sources:
            found: TableSource | None = None
            holder: MetadataStore | None = None
            bound = self._bound()
            for store, ref in bound[: 1 if key in self._adopted else None]:
                table = ref(key.parts)
                if table is not None:
                    probe = exp.select("*").from_(table).limit(0)
                    engine = self.engine
                    schema = (engine.side_arrow(probe) if side else engine.arrow(probe)).schema
                    addressable = store.row_addressable(key.parts)
                    found = TableSource(table, schema, store.name, row_ids=addressable)
                    holder = store
                    break
            self._sources[key] = found
            self._holder[key] = holder
        return self._sources[key]

    def holder(self, key: FeatureKey) -> MetadataStore | None:
        """The store a feature's rows come from (None: no store has it)."""
        self.locate(key)
        return self._holder.get(key)

    def served_by(self, key: FeatureKey) -> MetadataStore | None:
        """The fallback store serving ``key`` (the target holds none of it), else None."""
        holder = self.holder(key)
        if holder is None or holder is self.store or key in self._adopted:
            return None
        return holder

    def adopt(self, key: FeatureKey) -> int:
        """Copy the rows of the fallback serving ``key`` into the target store (one
        commit), which holds the feature from then on; returns the rows copied.

        The latest row of each sample under each feature version is copied, tombstones
        included: what any feature version reads as current stays the same here (a code
        version flipped back finds its old rows), without the fallback's whole history."""
        from mxd_cli.store import columns as c
        from mxd_cli.store.base import latest_rows

        source = self.locate(key)
        assert source is not None and self.served_by(key) is not None
        names = list(source.schema.names)
        ids = list(self.graph[key].spec.id_columns)
        if c.FEATURE_VERSION in names:
            ids.append(c.FEATURE_VERSION)
        rows = latest_rows(source.ref, ids, names, include_deleted=True)
        copied = self.store.append_query(key.parts, rows)
        self._adopted.add(key)
        self.forget(key)
        return copied

    def current(
        self,
        key: FeatureKey,
        columns: Sequence[str] | None = None,
        filter: str | None = None,
        *,
        side: bool = False,
    ) -> exp.Select | None:
        """A query for ``key``'s current rows, from the target store or the fallback that
        has it (None: no store has it); ``filter``: the allow-listed SQL of ``--filter``.
        Unknown features, columns and bad filters are usage errors naming them."""
        from mxd_cli.engine.filters import parse_filters
        from mxd_cli.engine.plan import current_rows
        from mxd_cli.engine.restrictions import types_of
        from mxd_cli.engine.sql import col
        from mxd_cli.errors import UsageError, did_you_mean

        if key not in self.graph:
            raise UsageError(
                f"unknown feature {key}",
                hint=did_you_mean(str(key), [str(k) for k in self.graph.order]),
            )
        source = self.locate(key, side=side)
        if source is None:
            return None
        names = list(source.schema.names)
        wanted = list(columns) if columns is not None else names
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise UsageError(
                f"feature {key} has no column(s) {', '.join(unknown)}",
                hint=did_you_mean(unknown[0], names),
            )
        where = None
        if filter:
            parsed = parse_filters([filter], types_of(source.schema))
            assert parsed is not None
            where = parsed.to_sqlglot()
        rows = current_rows(
            source, self.graph[key].spec.id_columns, self.feature_version(key), names, where=where
        )
        return exp.select(*(col(n) for n in wanted)).from_(rows.subquery("__mxd_read"))

    def keep(self, key: FeatureKey, query: exp.Expr, prefix: str) -> exp.Table:
        """``query``'s rows in a temporary table of the engine, kept until ``key`` is
        forgotten (resolving a feature reads them several times)."""
        table = self.engine.materialize(query, prefix)
        self._kept.setdefault(key, []).append(table)
        return table

    def forget(self, key: FeatureKey) -> None:
        """Drop what is known about ``key`` (after writing it), and its temporary tables."""
        for table in self._kept.pop(key, []):
            self.engine.drop(table)
        self.store.refresh(key.parts)
        self._sources.pop(key, None)
        self._holder.pop(key, None)

    def rebind(self) -> None:
        """Attach the fallbacks again (the engine was reopened)."""
        self._bindings = None
        self._sources.clear()
        self._holder.clear()
        self._kept.clear()  # (they went with the old connection)
