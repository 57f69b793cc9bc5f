"""The SQL engines increments run in: what every engine offers, and DuckDB's.

:class:`SqlEngine` is the seam between the increment plans (sqlglot expressions, built
once in :mod:`mxd_cli.engine`) and whatever runs them: it renders a plan for its dialect,
runs it, and supplies what differs between engines (struct building, ordered concatenation,
hash functions). :class:`DuckDBEngine` serves the DuckDB and Delta stores; the Spark store
has its own (:mod:`mxd_cli.store.spark`).

DuckDB stores run their queries in their own database file; Delta stores in an in-memory
DuckDB that reads the tables' Parquet files where they lie (projection and filter pushdown
into the scans, out-of-core joins); fallback stores are attached to the same connection, so
one query can join a branch's features with its fallback's. Only what the caller fetches —
counts, and the rows of a chunk handed to an asset — crosses into Python.

Hashes: DuckDB computes md5 and sha256 itself (lowercase hex, as Metaxy). It has no xxhash
or wyhash, so those run as vectorized Arrow UDFs over polars-hash (one call per DuckDB
vector of 2,048 values, never a Python loop per row), registered on first use.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
import polars_hash  # noqa: F401  (registers the .nchash expression namespace)
import pyarrow as pa
from sqlglot import exp

from mxd_cli.errors import StoreError

if TYPE_CHECKING:
    import duckdb

DIALECT = "duckdb"
#: Each DuckDB connection's (and cursor's) own settings: timestamps read in UTC, and no
#: progress bar of DuckDB's on the terminal for a query past 2 s, beside mxd's (or, with
#: --json, alone).
SESSION = "SET TimeZone = 'UTC'; SET enable_progress_bar = false"

# Algorithm -> how DuckDB computes its digest text: a built-in function, or an Arrow UDF.
_NATIVE = {"md5": "md5", "sha256": "sha256"}
HASH_UDFS = {
    "xxhash32": "mxd_xxhash32",
    "xxhash64": "mxd_xxhash64",
    "xxh3_64": "mxd_xxh3_64",
    "wyhash": "mxd_wyhash",
}
#: UDF name -> algorithm: the inverse of HASH_UDFS (engines register UDFs by name).
UDF_ALGORITHMS = {name: algorithm for algorithm, name in HASH_UDFS.items()}
#: The two 64-bit content fingerprints of ``observe``: UDF name -> algorithm, in order.
FINGERPRINTS = {"mxd_fp_xxhash64": "xxhash64", "mxd_fp_wyhash": "wyhash"}


def digest_kernel(algorithm: str) -> Any:
    expr = pl.col("v").nchash  # type: ignore[attr-defined]
    digest = {
        "xxhash32": expr.xxhash32(),
        "xxhash64": expr.xxhash64(),
        "xxh3_64": expr.xxh3_64(),
        "wyhash": expr.wyhash(),
    }[algorithm].cast(pl.String)

    return _kernel(digest)


class _Stream:
    """An Arrow chunked array seen only through the Arrow C stream interface."""

    __slots__ = ("values",)

    def __init__(self, values: pa.ChunkedArray) -> None:
        self.values = values

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.values.__arrow_c_stream__(requested_schema)


class _Array:
    """An Arrow array seen only through the Arrow C data interface."""

    __slots__ = ("values",)

    def __init__(self, values: pa.Array) -> None:
        self.values = values

    def __arrow_c_array__(self, requested_schema: object | None = None) -> object:
        return self.values.__arrow_c_array__(requested_schema)


def _kernel(digest: pl.Expr) -> Any:
    """An Arrow UDF computing ``digest`` of column ``v``. Engines call it per vector
    (DuckDB: 2,048 rows), so its fixed cost counts: ~0.2 ms a call this way.

    Polars takes the vector through the Arrow C interfaces: given a pyarrow object it
    imports ``pyarrow.compute`` on the first call, 0.1-0.4 s of every process that hashes.
    """

    def kernel(values: pa.Array | pa.ChunkedArray) -> pa.Array:
        given: Any = _Stream(values) if isinstance(values, pa.ChunkedArray) else _Array(values)
        return pl.Series(given).alias("v").to_frame().select(digest).to_series().to_arrow()

    return kernel


def integer_kernel(algorithm: str) -> Any:
    expr = pl.col("v").nchash  # type: ignore[attr-defined]
    digest = (expr.xxhash64() if algorithm == "xxhash64" else expr.wyhash()).cast(pl.UInt64)
    return _kernel(digest)


class SqlEngine(abc.ABC):
    """Where a store's queries run. Queries are sqlglot expressions written with DuckDB's
    function names (the plans' lingua franca); an engine renders them for its dialect.

    Results are fetched whole (counts, small tables) or as Arrow record batches (chunks).
    Temporary tables and views live as long as the engine.
    """

    dialect: str = DIALECT
    location: str = ""

    # SQL text and execution
    @abc.abstractmethod
    def render(self, query: exp.Expr | str) -> str:
        """The SQL text of ``query`` in this engine's dialect."""

    @abc.abstractmethod
    def execute(self, query: exp.Expr | str) -> None:
        """Run a statement."""

    def side_execute(self, query: exp.Expr | str) -> None:
        """``execute`` while a stream of the engine is open."""
        self.execute(query)

    @abc.abstractmethod
    def rows(self, query: exp.Expr | str) -> list[tuple[Any, ...]]:
        """The result as Python tuples (counts, small results)."""

    def count(self, relation: exp.Expr, distinct: Sequence[str] = ()) -> int:
        """Rows of a table or query; with ``distinct``, its distinct values of those columns."""
        if isinstance(relation, exp.Query):
            relation = relation.subquery("__mxd_counted", copy=False)
        if distinct:
            relation = (
                exp.select(*(exp.column(k, quoted=True) for k in distinct))
                .from_(relation, copy=False)
                .distinct(copy=False)
                .subquery("__mxd_distinct", copy=False)
            )
        query = exp.select(exp.func("count", exp.Star())).from_(relation, copy=False)
        return int(self.rows(query)[0][0])

    @abc.abstractmethod
    def arrow(self, query: exp.Expr | str) -> pa.Table:
        """The whole result as an Arrow table."""

    def frame(self, query: exp.Expr | str) -> pl.DataFrame:
        found = pl.from_arrow(self.arrow(query))
        assert isinstance(found, pl.DataFrame)
        return found

    @abc.abstractmethod
    def batches(self, query: exp.Expr | str, size: int) -> Iterator[pa.RecordBatch]:
        """The result in record batches of at most ``size`` rows, in the query's order,
        without holding it all in Python."""

    def side_arrow(self, query: exp.Expr | str) -> pa.Table:
        """``arrow`` while a stream of the engine is open."""
        return self.arrow(query)

    def side_frame(self, query: exp.Expr | str) -> pl.DataFrame:
        found = pl.from_arrow(self.side_arrow(query))
        assert isinstance(found, pl.DataFrame)
        return found

    # tables of the engine
    @abc.abstractmethod
    def register(self, data: pa.Table | pl.DataFrame, prefix: str = "__mxd_data") -> exp.Table:
        """Make an Arrow table (or Polars frame) queryable under a new name."""

    @abc.abstractmethod
    def unregister(self, table: exp.Table) -> None: ...

    @abc.abstractmethod
    def temp_table(self, columns: pa.Schema, prefix: str = "__mxd_stage") -> exp.Table:
        """A new empty temporary table with ``columns``."""

    @abc.abstractmethod
    def insert_arrow(self, table: exp.Table, data: pa.Table | pl.DataFrame) -> None:
        """Append rows to a temporary table by column name; columns it lacks are added."""

    @abc.abstractmethod
    def materialize(self, query: exp.Expr, prefix: str = "__mxd_rows") -> exp.Table:
        """The rows of ``query``, computed once, in a new temporary table."""

    @abc.abstractmethod
    def view(self, name: exp.Table, query: exp.Expr | str) -> None:
        """Create (or replace) a temporary view ``name`` of ``query``."""

    @abc.abstractmethod
    def union_by_name(self, parts: Sequence[exp.Expr]) -> exp.Expr:
        """A relation of every row of ``parts``, columns matched by name (missing: NULL)."""

    @abc.abstractmethod
    def drop(self, table: exp.Table) -> None: ...

    # what differs between SQL engines
    @abc.abstractmethod
    def struct(self, fields: Sequence[tuple[str, exp.Expr]]) -> exp.Expr:
        """A struct with these named fields, in this order."""

    @abc.abstractmethod
    def field(self, struct: exp.Expr, name: str) -> exp.Expr:
        """One field of a struct column (NULL when the struct is NULL)."""

    @abc.abstractmethod
    def ordered_join(self, value: exp.Expr, order: Sequence[exp.Expr], separator: str) -> exp.Expr:
        """``value`` of every row of a group, ordered, joined by ``separator`` (NULLs
        skipped)."""

    def prefix(self, text: exp.Expr, length: int) -> exp.Expr:
        return exp.Substring(
            this=text, start=exp.Literal.number(1), length=exp.Literal.number(length)
        )

    @abc.abstractmethod
    def hash_call(self, algorithm: str, text: exp.Expr) -> exp.Expr:
        """The lowercase hex digest of ``text`` (a string expression) for ``algorithm``,
        as Metaxy computes it."""

    @abc.abstractmethod
    def fingerprint_calls(self, text: exp.Expr) -> tuple[exp.Expr, exp.Expr]:
        """Two stable 64-bit hashes of ``text``, as unsigned integers, for fingerprints."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the engine (its temporary objects go with it)."""


class DuckDBEngine(SqlEngine):
    """One DuckDB connection and what mxd registers on it.

    Every query is built with sqlglot and rendered for DuckDB here; results are fetched
    whole (counts, small tables) or as Arrow record batches (chunks).
    """

    dialect = DIALECT

    def __init__(self, connection: duckdb.DuckDBPyConnection, *, location: str) -> None:
        self.con = connection
        self.location = location
        self._functions: set[str] = set()  # UDFs the queries built so far call
        self._registered: set[str] = set()  # UDFs registered on the connection itself
        self._names = 0
        self.log = logging.getLogger("mxd.sql")

    # SQL text
    def render(self, query: exp.Expr | str) -> str:
        return query if isinstance(query, str) else query.sql(dialect=DIALECT, identify=True)

    # execution
    def execute(self, query: exp.Expr | str, params: Sequence[Any] = ()) -> None:
        self._run(query, params).fetchall()

    def side_execute(self, query: exp.Expr | str) -> None:
        """``execute`` on a cursor of its own (while a stream of the connection is open);
        what it creates must live in the database, not among temporary objects."""
        cursor = self.con.cursor()
        try:
            cursor.execute(SESSION)
            cursor.execute(self.render(query))
        except _duckdb_error() as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
        finally:
            cursor.close()

    def rows(self, query: exp.Expr | str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = self._run(query, params).fetchall()
        return result

    def arrow(self, query: exp.Expr | str, params: Sequence[Any] = ()) -> pa.Table:
        sql = self.render(query)
        self.log.debug("%s", sql)
        self._ensure_functions(self.con)
        try:
            table: pa.Table = self.con.sql(sql, params=list(params) or None).to_arrow_table()
        except _duckdb_error() as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
        return table

    def batches(
        self, query: exp.Expr | str, size: int, params: Sequence[Any] = ()
    ) -> Generator[pa.RecordBatch, None, None]:
        """The result in record batches of ``size`` rows, streamed off the connection
        (writes may go on meanwhile through a cursor of it; other reads must wait until
        the stream is done)."""
        sql = self.render(query)
        self.log.debug("%s", sql)
        self._ensure_functions(self.con)
        reader = None
        try:
            relation = self.con.sql(sql, params=list(params) or None)
            reader = relation.to_arrow_reader(size)
            for batch in reader:
                if batch.num_rows:
                    yield batch
        except _duckdb_error() as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
        finally:
            # A stream left half-read would block the connection's next query.
            if reader is not None:
                reader.close()

    def side_arrow(self, query: exp.Expr | str) -> pa.Table:
        """``arrow`` on a cursor of its own (see :meth:`side_frame`)."""
        sql = self.render(query)
        self._ensure_functions(self.con)
        cursor = self.con.cursor()
        try:
            cursor.execute(SESSION)
            return cursor.sql(sql).to_arrow_table()
        except _duckdb_error() as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
        finally:
            cursor.close()

    def _run(self, query: exp.Expr | str, params: Sequence[Any]) -> Any:
        sql = self.render(query)
        self.log.debug("%s", sql)
        self._ensure_functions(self.con)
        try:
            return self.con.execute(sql, list(params))
        except _duckdb_error() as exc:
            raise StoreError(f"{self.location}: {exc}") from exc

    # data from Python
    def register(self, data: pa.Table | pl.DataFrame, prefix: str = "__mxd_data") -> exp.Table:
        """Make an Arrow table (or Polars frame) queryable as a view; zero-copy."""
        self._names += 1
        name = f"{prefix}_{self._names}"
        # (DuckDB reads Polars' string views as they are: the default conversion copies
        # every string, 3.5 s for a root of 10M samples.)
        newest = pl.CompatLevel.newest()
        arrow = data.to_arrow(compat_level=newest) if isinstance(data, pl.DataFrame) else data
        self.con.register(name, arrow)
        return exp.to_table(name, quoted=True)

    def unregister(self, table: exp.Table) -> None:
        self.con.unregister(table.name)

    def temp_table(self, columns: pa.Schema, prefix: str = "__mxd_stage") -> exp.Table:
        """An empty temporary table with ``columns`` (dropped with the connection)."""
        self._names += 1
        name = exp.to_table(f"{prefix}_{self._names}", quoted=True)
        empty = pa.Table.from_batches([], schema=columns)
        self.con.register("__mxd_empty", empty)
        try:
            self.execute(f"CREATE TEMP TABLE {self.render(name)} AS SELECT * FROM __mxd_empty")
        finally:
            self.con.unregister("__mxd_empty")
        return name

    def materialize(self, query: exp.Expr, prefix: str = "__mxd_rows") -> exp.Table:
        """The rows of ``query`` in a new temporary table (read several times, computed
        once; DuckDB spills it to disk when it outgrows memory)."""
        self._names += 1
        name = exp.to_table(f"{prefix}_{self._names}", quoted=True)
        self.execute(f"CREATE TEMP TABLE {self.render(name)} AS {self.render(query)}")
        return name

    def insert_arrow(self, table: exp.Table, data: pa.Table | pl.DataFrame) -> None:
        """Append rows to a (temporary) table by column name; columns it lacks are added."""
        view = self.register(data)
        target = self.render(table)
        try:
            have = set(self.con.sql(f"SELECT * FROM {target} LIMIT 0").columns)
            incoming = self.con.sql(f"SELECT * FROM {self.render(view)} LIMIT 0")
            for name, dtype in zip(incoming.columns, incoming.types, strict=True):
                if name not in have:
                    column = exp.to_identifier(name, quoted=True).sql(DIALECT)
                    self.execute(f"ALTER TABLE {target} ADD COLUMN {column} {dtype}")
            self.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {self.render(view)}")
        finally:
            self.unregister(view)

    def view(self, name: exp.Table, query: exp.Expr | str) -> None:
        self.execute(f"CREATE OR REPLACE TEMP VIEW {self.render(name)} AS {self.render(query)}")

    def union_by_name(self, parts: Sequence[exp.Expr]) -> exp.Expr:
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {self.render(p)}" for p in parts)
        parsed: exp.Expr = exp.maybe_parse(f"SELECT * FROM ({union})", dialect=DIALECT)
        assert isinstance(parsed, exp.Select)
        return parsed.subquery("__mxd_union")

    def drop(self, table: exp.Table) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.render(table)}")

    # what differs between SQL engines
    def struct(self, fields: Sequence[tuple[str, exp.Expr]]) -> exp.Expr:
        return exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier(name, quoted=True), expression=value)
                for name, value in fields
            ]
        )

    def field(self, struct: exp.Expr, name: str) -> exp.Expr:
        return exp.func("struct_extract", struct, exp.Literal.string(name))

    def ordered_join(self, value: exp.Expr, order: Sequence[exp.Expr], separator: str) -> exp.Expr:
        return exp.GroupConcat(
            this=exp.Order(this=value, expressions=[exp.Ordered(this=o) for o in order]),
            separator=exp.Literal.string(separator),
        )

    # hash functions
    def hash_call(self, algorithm: str, text: exp.Expr) -> exp.Expr:
        if algorithm in _NATIVE:
            return exp.func(_NATIVE[algorithm], text)
        name = HASH_UDFS[algorithm]
        self._functions.add(name)
        return exp.Anonymous(this=name, expressions=[text])

    def fingerprint_calls(self, text: exp.Expr) -> tuple[exp.Expr, exp.Expr]:
        self._functions.update(FINGERPRINTS)
        return tuple(  # type: ignore[return-value]
            exp.Anonymous(this=name, expressions=[text]) for name in FINGERPRINTS
        )

    def _ensure_functions(self, con: Any) -> None:
        """Register the UDFs queries use (on the connection: its cursors share them)."""
        done = self._registered
        missing = self._functions - done
        if not missing:
            return
        import duckdb

        varchar, ubigint = duckdb.sqltypes.VARCHAR, duckdb.sqltypes.UBIGINT
        for name in sorted(missing):
            if name in FINGERPRINTS:
                kernel, returns = integer_kernel(FINGERPRINTS[name]), ubigint
            else:
                kernel, returns = digest_kernel(UDF_ALGORITHMS[name]), varchar
            con.create_function(name, kernel, [varchar], returns, type="arrow", side_effects=False)
        done |= missing

    def close(self) -> None:
        self.con.close()


def duckdb_engine(engine: SqlEngine, store: str, kind: str) -> DuckDBEngine:
    """``engine`` as a DuckDB engine, for a store of ``kind`` bound into it as a fallback
    (its tables can only be attached to DuckDB)."""
    if not isinstance(engine, DuckDBEngine):
        raise StoreError(
            f"store {store!r} ({kind}) cannot serve as a fallback of a store whose queries "
            f"run in {engine.dialect}",
            hint="give a store fallbacks of its own kind (a spark store: other spark stores)",
        )
    return engine


def _duckdb_error() -> type[Exception]:
    import duckdb

    error: type[Exception] = duckdb.Error
    return error
