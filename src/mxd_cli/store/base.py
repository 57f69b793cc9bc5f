"""The metadata store interface and the rules every backend shares.

A store holds one append-only table per feature (Metaxy's format) plus system tables, and
answers questions about them *where they live*: every backend exposes its tables to a SQL
engine (:mod:`mxd_cli.store.sql_engine`) in which the engine layer runs its increment
plans. Backends supply what is physical — table references, schemas, write marks and the
rows written since one, appends, row deletes — and the logical rules (which row of an id
is current, soft deletes as tombstone copies) are written once, here, as SQL.

Small reads (system tables, tests) come back as Polars frames through :meth:`scan` and
:meth:`read`; feature-sized work stays in the engine.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.store import columns as c

if TYPE_CHECKING:
    from mxd_cli.store.sql_engine import SqlEngine

Table = tuple[str, ...]
"""A table address: a feature key's parts, or a system table's parts."""

# mxd's own system tables. Their first part contains '__', which no feature key may, so
# they can never collide with a feature table or with Metaxy's system tables.
RUNS: Table = ("__mxd", "runs")
OBSERVATIONS: Table = ("__mxd", "observations")
CHECKPOINTS: Table = ("__mxd", "checkpoints")
FEATURE_VERSIONS: Table = c.FEATURE_VERSIONS_KEY

RANK = "__mxd_rank"
_CTE_NUMBERS = itertools.count()


def now_utc() -> datetime:
    """The current time as a tz-aware UTC datetime with microsecond precision."""
    return datetime.now(timezone.utc)


def q(name: str) -> exp.Identifier:
    """A quoted identifier."""
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=q(name), table=q(table) if table else None)


def row_stamp() -> exp.Expr:
    """When a row took effect: a tombstone keeps the row's ``metaxy_updated_at`` and is
    stamped by its ``metaxy_deleted_at``. Per id, the row with the greatest stamp is current."""
    return exp.func("coalesce", col(c.DELETED_AT), col(c.UPDATED_AT))


def stamped_after(instant: str) -> exp.Expr:
    """Whether a row's stamp comes strictly after ``instant`` (a timestamp as DuckDB prints
    it): a tie is not after, nor is a row without a stamp."""
    later = row_stamp() > exp.cast(exp.Literal.string(instant), "TIMESTAMPTZ")
    return exp.func("coalesce", later, exp.false())


def latest_rows(
    source: exp.Expr,
    id_columns: Sequence[str],
    columns: Sequence[str],
    *,
    where: exp.Expr | None = None,
    include_deleted: bool = False,
    name: str = "__mxd",
) -> exp.Select:
    """Current rows of ``source`` (a table or subquery): per id the row with the greatest
    ``coalesce(metaxy_deleted_at, metaxy_updated_at)``; tombstones win over older rows and
    are then dropped unless asked for. ``where`` narrows the rows first (a feature
    version, some ids). Only ``columns`` are kept (the choice needs ids and timestamps).

    Most ids have a single row and pass straight through; only ids with several rows
    (rewritten or tombstoned) go through the window that picks the latest, so a table is
    not sorted as a whole. ``name`` prefixes the query's CTEs, numbered so that no two
    queries share a CTE name (Spark hoists nested CTEs into one WITH clause).
    """
    name = f"{name}{next(_CTE_NUMBERS)}"
    rows, several_ids = f"{name}_f", f"{name}_d"
    ids = [col(k) for k in id_columns]
    keep = list(dict.fromkeys([*columns]))
    needed = list(dict.fromkeys([*id_columns, *keep, c.UPDATED_AT, c.DELETED_AT]))
    base = exp.select(*(col(n) for n in needed)).from_(source, copy=False)
    if where is not None:
        base = base.where(where, copy=False)
    several = (
        exp.select(*ids)
        .from_(rows, copy=False)
        .group_by(*ids, copy=False)
        .having(exp.func("count", exp.Star()) > 1, copy=False)
    )
    alive = None if include_deleted else col(c.DELETED_AT).is_(exp.null())
    single = (
        exp.select(*(col(n) for n in keep))
        .from_(rows, copy=False)
        .join(several_ids, using=tuple(id_columns), join_type="left anti", copy=False)
    )
    if alive is not None:
        single = single.where(alive.copy(), copy=False)
    order = exp.Order(expressions=[exp.Ordered(this=row_stamp(), desc=True)])
    ranked = exp.select(
        *(col(n) for n in needed),
        exp.alias_(
            exp.Window(this=exp.RowNumber(), partition_by=ids, order=order),
            RANK,
            quoted=True,
            copy=False,
        ),
    ).from_(
        exp.select("*")
        .from_(rows, copy=False)
        .join(several_ids, using=tuple(id_columns), join_type="left semi", copy=False)
        .subquery(f"{name}_s", copy=False)
    )
    chosen = (
        exp.select(*(col(n) for n in keep))
        .from_(ranked.subquery(f"{name}_r", copy=False))
        .where(col(RANK).eq(1), copy=False)
    )
    if alive is not None:
        chosen = chosen.where(alive.copy(), copy=False)
    union = exp.union(single, chosen, distinct=False, copy=False)
    return (
        exp.select("*")
        .from_(union.subquery(f"{name}_latest", copy=False))
        .with_(rows, as_=base, copy=False)
        .with_(several_ids, as_=several, copy=False)
    )


class MetadataStore(abc.ABC):
    """A metadata store: one backend instance bound to one location.

    ``read_only`` stores never create or change anything; a table that does not exist
    reads as ``None``.
    """

    kind: str = "?"

    def __init__(self, name: str, *, read_only: bool = False) -> None:
        self.name = name
        self.read_only = read_only
        #: Called before every write (a writer lock's ``check``): raising stops the write.
        self.before_write: Callable[[], None] | None = None

    # ---- the engine and the tables in it -----------------------------------------------
    @abc.abstractmethod
    def engine(self) -> SqlEngine:
        """The SQL engine this store's tables are queried in (opened on first use)."""

    @abc.abstractmethod
    def ref(self, table: Table) -> exp.Table | None:
        """How ``table`` is named in :meth:`engine` (None when it does not exist)."""

    def bind(self, engine: SqlEngine, alias: str) -> Callable[[Table], exp.Table | None]:
        """Make this store's tables visible, read-only, in another store's engine (for
        fallback stores); returns the table-reference function there."""
        raise NotImplementedError(f"a {self.kind} store cannot be read from {engine.location}")

    @abc.abstractmethod
    def schema(self, table: Table) -> pa.Schema | None:
        """The columns and types of ``table`` (None when it does not exist)."""

    @abc.abstractmethod
    def physical_name(self, table: Table) -> str:
        """The backend's name for a table (DuckDB table name, Delta folder path)."""

    @abc.abstractmethod
    def tables(self) -> set[str]:
        """Physical names of the tables present."""

    @abc.abstractmethod
    def location(self) -> str:
        """Where the store lives (a path or URI), for messages."""

    def has(self, table: Table) -> bool:
        return self.ref(table) is not None

    def row_addressable(self, table: Table) -> bool:
        """Whether :meth:`ref` (and :meth:`bind`'s references) name a base table whose
        rows the engine addresses by ``rowid``: a narrow read then scans only the key
        columns to find the rows, and fetches the other columns of those alone."""
        return False

    # ---- change tracking -----------------------------------------------------------------
    def write_mark(self, table: Table) -> str | None:
        """A cheap token that changes whenever the table's rows change ("" when the table
        does not exist), or None when the backend cannot give one without reading rows."""
        return None

    def changed_since(self, table: Table, mark: str) -> exp.Expr | None:
        """The rows written to ``table`` after ``mark`` was taken (a relation in the
        engine), or None when the backend cannot tell exactly (the table was rewritten,
        or rows came in out of order): callers then look at every row."""
        return None

    def rows_before(self, table: Table, mark: str) -> exp.Expr | None:
        """The rows ``table`` held when ``mark`` was taken (a relation in the engine), where
        :meth:`changed_since` can tell the later ones apart; else None."""
        return None

    def written_after(self, table: Table, mark: str) -> exp.Expr | None:
        """A condition on ``table``'s own columns that holds exactly for the rows written
        after ``mark``, where the backend tells them apart that way (so that rows already
        read, e.g. a few samples' rows, can be split without reading the table again);
        None where it cannot (a table version or a file list tells them apart instead)."""
        return None

    def later_than_mark(self, table: Table, mark: str) -> exp.Expr | None:
        """A condition on a row's stamps under which it comes after every row ``table``
        held at ``mark`` in the current-row order (``coalesce(deleted_at, updated_at)``,
        strictly): among a sample's rows, such a row or a later one is current. None
        where the backend cannot bound the stamps of the rows held then."""
        return None

    # ---- writes --------------------------------------------------------------------------
    @abc.abstractmethod
    def append(self, table: Table, data: pl.DataFrame | pa.Table) -> int:
        """Append rows atomically (one commit), matching columns by name; new columns and
        new struct fields are added. Returns the rows written."""

    @abc.abstractmethod
    def append_query(self, table: Table, query: exp.Expr) -> int:
        """Append the rows of a query run in :meth:`engine` (they never leave it where the
        backend can write from SQL). One commit; returns the rows written."""

    def maps_chunks(self) -> bool:
        """Whether :meth:`append_mapped` runs chunks on a cluster (``executor="spark"``)."""
        return False

    def append_mapped(
        self,
        table: Table,
        query: exp.Expr,
        function: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
        schema: pa.Schema,
        job_rows: int,
    ) -> Iterator[tuple[int, int]]:
        """Append ``function`` applied, where the engine runs, to the rows of ``query``
        (batches in, rows of ``schema`` out), in commits of about ``job_rows`` input rows;
        yields (rows in, rows written) per commit."""
        raise NotImplementedError(f"a {self.kind} store computes chunks in the driver")

    @abc.abstractmethod
    def delete_where(self, table: Table, condition: exp.Expr) -> int:
        """Remove physically every row for which ``condition`` (SQL over the table's
        columns) is true, atomically; returns how many went."""

    @abc.abstractmethod
    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        """Replace a table's rows atomically."""

    def refresh(self, table: Table) -> None:  # noqa: B027 - optional for backends
        """Forget what is cached about ``table`` after writing it."""

    def check_writable(self) -> None:
        from mxd_cli.errors import StoreError

        if self.read_only:
            raise StoreError(f"store {self.name!r} is open read-only")
        if self.before_write is not None:
            self.before_write()

    # ---- lifecycle -----------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Group operations (kept for callers that batch work; engines stay open)."""
        yield

    def lock_path(self) -> Path | None:
        """Where the writer lock of this store lives (None: the backend cannot hold one)."""
        return None

    def yield_to_readers(self) -> bool:
        """Let readers in other processes in, if any wait (at a commit boundary). True
        when the engine was reopened: open result streams of it are gone."""
        return False

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release resources; the store may not be used afterwards."""

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- small reads, shared -------------------------------------------------------------
    def scan(self, table: Table) -> pl.LazyFrame | None:
        """Every physical row of a table (history included), or None when it does not
        exist. For system tables and tests: it reads the whole table."""
        ref = self.ref(table)
        if ref is None:
            return None
        return self.engine().frame(exp.select("*").from_(ref, copy=False)).lazy()

    def read(
        self,
        table: Table,
        id_columns: Sequence[str],
        *,
        feature_version: str | None = None,
        include_deleted: bool = False,
        where: exp.Expr | None = None,
    ) -> pl.LazyFrame | None:
        """Current rows of a feature table (see :func:`latest_rows`), or None if absent."""
        ref = self.ref(table)
        if ref is None:
            return None
        names = self.schema(table)
        assert names is not None
        columns = list(names.names)
        if not {c.UPDATED_AT, c.DELETED_AT, *id_columns} <= set(columns):
            return self.engine().frame(exp.select("*").from_(ref, copy=False)).lazy()
        condition = where
        if feature_version is not None:
            version = col(c.FEATURE_VERSION).eq(exp.Literal.string(feature_version))
            condition = version if condition is None else exp.and_(condition, version, copy=False)
        query = latest_rows(
            ref, id_columns, columns, where=condition, include_deleted=include_deleted
        )
        return self.engine().frame(query).lazy()

    def soft_delete(
        self,
        table: Table,
        rows: pl.DataFrame,
        *,
        feature_version: str,
        project_version: str,
        at: datetime | None = None,
        materialization_id: str | None = None,
    ) -> int:
        """Append tombstone copies of ``rows`` (current rows as read) and return their count.

        A copy keeps its created/updated timestamps, gets ``metaxy_deleted_at``, and is
        stamped with the current feature and project version (as Metaxy does).
        """
        if rows.height == 0:
            return 0
        tombstones = rows.with_columns(
            pl.lit(at or now_utc(), dtype=c.TIMESTAMP).alias(c.DELETED_AT),
            pl.lit(feature_version, dtype=pl.String).alias(c.FEATURE_VERSION),
            pl.lit(project_version, dtype=pl.String).alias(c.PROJECT_VERSION),
            pl.lit(materialization_id, dtype=pl.String).alias(c.MATERIALIZATION_ID),
        )
        self.append(table, tombstones)
        return rows.height

    def hard_delete(self, table: Table, keep: pl.Expr) -> int:
        """Remove physically every row for which ``keep`` is false (a Polars expression;
        small tables). Feature-sized deletes use :meth:`delete_where`."""
        frame = self.scan(table)
        if frame is None:
            return 0
        everything = frame.collect()
        kept = everything.filter(keep.fill_null(True))
        removed = everything.height - kept.height
        if removed:
            self.replace(table, kept)
        return removed


def split_where(ref: exp.Expr, condition: exp.Expr) -> tuple[exp.Select, exp.Select]:
    """For a delete that rewrites a table: a query counting the rows ``condition`` matches
    (NULL counts as no match), and the rows it keeps."""
    matched = exp.func("coalesce", exp.paren(condition), exp.false())
    one_if = exp.case().when(matched, exp.Literal.number(1)).else_(exp.Literal.number(0))
    counted = exp.select(exp.Sum(this=one_if)).from_(ref.copy())
    kept = exp.select("*").from_(ref.copy()).where(exp.not_(matched.copy()))
    return counted, kept


def tombstones(
    source: exp.Expr,
    columns: Sequence[str],
    *,
    feature_version: str,
    project_version: str,
    at: datetime,
    materialization_id: str | None,
) -> exp.Select:
    """Tombstone copies of the rows of ``source``: every column kept but the deletion
    stamp and the versions (as :meth:`MetadataStore.soft_delete`, in SQL)."""
    stamped = {
        c.DELETED_AT: exp.cast(exp.Literal.string(at.isoformat()), "TIMESTAMPTZ"),
        c.FEATURE_VERSION: exp.Literal.string(feature_version),
        c.PROJECT_VERSION: exp.Literal.string(project_version),
        c.MATERIALIZATION_ID: (
            exp.Literal.string(materialization_id)
            if materialization_id is not None
            else exp.cast(exp.null(), "VARCHAR")
        ),
    }
    names = list(dict.fromkeys([*columns, *stamped]))
    return exp.select(
        *(
            exp.alias_(stamped[n], n, quoted=True, copy=False) if n in stamped else col(n)
            for n in names
        )
    ).from_(source, copy=False)
