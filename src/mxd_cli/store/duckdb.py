"""DuckDB backend: one embedded database file (the default store).

Connections are opened per operation and closed straight after, so a long materialize
holds the file only for the moment a chunk is written: readers in other processes wait
at most that long (DuckDB allows one read-write process, or many read-only ones).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from sqlglot import exp

from mxd_cli.errors import StoreError
from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore, Table

_BUSY_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def _quote(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _writable(frame: pl.DataFrame) -> pl.DataFrame:
    """Types DuckDB stores as Metaxy expects: all-null columns become strings (DuckDB has no
    NULL column type) and timestamps become microseconds, tz-aware ones in UTC."""
    casts = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Null:
            casts.append(pl.col(name).cast(pl.String))
        elif isinstance(dtype, pl.Datetime):
            col = pl.col(name)
            if dtype.time_zone is not None:
                col = col.dt.convert_time_zone("UTC")
            casts.append(col.dt.cast_time_unit("us"))
    return frame.with_columns(casts) if casts else frame


def _struct_fields(dtype: str) -> list[tuple[str, str]] | None:
    """Top-level fields of a DuckDB STRUCT type string (names unquoted), else None."""
    if not dtype.startswith("STRUCT(") or not dtype.endswith(")"):
        return None
    fields, depth, start, body = [], 0, 0, dtype[7:-1]
    for i, ch in enumerate(body + ","):
        if ch in "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            part = body[start:i].strip()
            name, _, ftype = part.partition(" ")
            fields.append((name.strip('"'), ftype))
            start = i + 1
    return fields


def _latest_sql(
    table: str, id_columns: Sequence[str], feature_version: str | None, include_deleted: bool
) -> str:
    """The current rows of ``table`` (``$1``: the feature version, when given).

    Most ids have a single row: they pass straight through. Only ids with several rows
    (rewritten, or tombstoned) go through the window that picks the latest; ranking every
    row would sort the whole table.
    """
    ids = ", ".join(_quote(k) for k in id_columns)
    order = f"coalesce({_quote(c.DELETED_AT)}, {_quote(c.UPDATED_AT)})"
    where = "" if feature_version is None else f"WHERE {_quote(c.FEATURE_VERSION)} = $1"
    alive = "TRUE" if include_deleted else f"{_quote(c.DELETED_AT)} IS NULL"
    return (
        f"WITH f AS (SELECT * FROM {table} {where}), "
        f"d AS (SELECT {ids} FROM f GROUP BY ALL HAVING count(*) > 1) "
        f"SELECT * FROM f ANTI JOIN d USING ({ids}) WHERE {alive} "
        "UNION ALL "
        "SELECT * EXCLUDE (__mxd_rank) FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY {ids} ORDER BY {order} DESC) AS __mxd_rank "
        f"FROM f SEMI JOIN d USING ({ids})) WHERE __mxd_rank = 1 AND {alive}"
    )


class DuckDBStore(MetadataStore):
    """Feature tables named ``a__b`` inside one DuckDB database."""

    kind = "duckdb"

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(name, read_only=read_only)
        database = options.get("database", ":memory:")
        if not isinstance(database, str):
            raise StoreError(f"store {name!r}: 'database' must be a path string")
        self.database = database
        self.busy_timeout = busy_timeout
        self._settings = dict(options.get("config") or {})
        # An in-memory database lives as long as its connection, so keep that one open.
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._session: duckdb.DuckDBPyConnection | None = None
        self._tables: set[str] | None = None  # cached while a session is open
        if database == ":memory:":
            self._memory = duckdb.connect(":memory:", config=self._settings)
            self._memory.execute("SET TimeZone = 'UTC'")

    def location(self) -> str:
        return self.database

    def lock_path(self) -> Path | None:
        return None if self._memory is not None else Path(self.database + ".mxd-lock")

    def physical_name(self, table: Table) -> str:
        return "__".join(table).replace("-", "_")

    @property
    def _exists(self) -> bool:
        return self._memory is not None or Path(self.database).exists()

    @contextmanager
    def session(self) -> Iterator[None]:
        if self._session is not None or self._memory is not None or not self._exists:
            # (A read-only store whose file does not exist yet has nothing to hold open.)
            yield
            return
        with self.connect() as con:
            self._session = con
            try:
                yield
            finally:
                self._session = None
                self._tables = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation (or the open session's); waits while another
        process writes."""
        if self._memory is not None:
            yield self._memory
            return
        if self._session is not None:
            yield self._session
            return
        if not self.read_only:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        while True:
            try:
                con = duckdb.connect(self.database, read_only=self.read_only, config=self._settings)
                break
            except duckdb.IOException as exc:
                busy = any(m in str(exc) for m in _BUSY_MESSAGES)
                if not busy or time.monotonic() > deadline:
                    hint = (
                        "another mxd process is writing; try again or raise the wait"
                        if busy
                        else None
                    )
                    raise StoreError(
                        f"cannot open DuckDB store {self.database}: {exc}", hint=hint
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def tables(self) -> set[str]:
        if self._tables is not None:
            return set(self._tables)
        if not self._exists:
            return set()
        with self.connect() as con:
            found = self._list(con)
        return found

    def _list(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        found = {r[0] for r in rows}
        if self._session is not None or self._memory is not None:
            self._tables = found
        return set(found)

    def _present(self, con: duckdb.DuckDBPyConnection, name: str) -> bool:
        return name in (self._tables if self._tables is not None else self._list(con))

    def scan(self, table: Table) -> pl.LazyFrame | None:
        name = self.physical_name(table)
        if not self._exists:
            return None
        with self.connect() as con:
            if not self._present(con, name):
                return None
            arrow = con.sql(f"SELECT * FROM {_quote(name)}").to_arrow_table()
        frame = pl.from_arrow(arrow)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    def read(
        self,
        table: Table,
        id_columns: Sequence[str],
        *,
        feature_version: str | None = None,
        include_deleted: bool = False,
    ) -> pl.LazyFrame | None:
        """Current rows, chosen inside DuckDB: only they cross into Polars, not the history.

        Same rule as :func:`~mxd_cli.store.base.latest_rows`: per id the row with the
        greatest coalesce(deleted_at, updated_at), at ``feature_version``; tombstones win,
        then are dropped unless ``include_deleted``.
        """
        name = self.physical_name(table)
        if not self._exists:
            return None
        with self.connect() as con:
            if not self._present(con, name):
                return None
            columns = {r[0] for r in con.execute(f"DESCRIBE {_quote(name)}").fetchall()}
            needed = {*id_columns, c.FEATURE_VERSION, c.UPDATED_AT, c.DELETED_AT}
            if not needed <= columns:
                arrow = None
            else:
                sql = _latest_sql(_quote(name), id_columns, feature_version, include_deleted)
                params = [] if feature_version is None else [feature_version]
                arrow = con.sql(sql, params=params).to_arrow_table()
        if arrow is None:
            return super().read(
                table, id_columns, feature_version=feature_version, include_deleted=include_deleted
            )
        frame = pl.from_arrow(arrow)
        assert isinstance(frame, pl.DataFrame)
        return frame.lazy()

    def write_mark(self, table: Table) -> str | None:
        # Rows are only appended (or replaced by hard deletes, which drop rows): the row
        # count and the newest timestamp together change with every write. Both come from
        # DuckDB's column statistics, without reading the table.
        name = self.physical_name(table)
        if not self._exists:
            return ""
        with self.connect() as con:
            if not self._present(con, name):
                return ""
            columns = {r[0] for r in con.execute(f"DESCRIBE {_quote(name)}").fetchall()}
            stamps = [col for col in (c.UPDATED_AT, c.DELETED_AT) if col in columns]
            maxima = ", ".join(f"CAST(max({_quote(col)}) AS VARCHAR)" for col in stamps)
            row = con.execute(
                f"SELECT count(*){', ' + maxima if maxima else ''} FROM {_quote(name)}"
            ).fetchone()
        return "|".join(str(v) for v in row or ())

    @contextmanager
    def _writing(self, frame: pl.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction with ``frame`` visible as ``__mxd_incoming``; rolled back on error."""
        self._check_writable()
        data = _writable(frame).to_arrow()
        self._tables = None
        with self.connect() as con:
            con.register("__mxd_incoming", data)
            try:
                con.execute("BEGIN TRANSACTION")
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("__mxd_incoming")

    def append(self, table: Table, frame: pl.DataFrame) -> None:
        name = _quote(self.physical_name(table))
        with self._writing(frame) as con:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM __mxd_incoming LIMIT 0"
            )
            present = {r[0]: r[1] for r in con.execute(f"DESCRIBE {name}").fetchall()}
            for column, dtype, *_ in con.execute("DESCRIBE __mxd_incoming").fetchall():
                if column not in present:
                    con.execute(f"ALTER TABLE {name} ADD COLUMN {_quote(column)} {dtype}")
                    continue
                # Struct columns gain fields in place (a feature gained a field); INSERT BY
                # NAME would otherwise drop the new field silently.
                have = {f for f, _ in _struct_fields(present[column]) or []}
                for field, ftype in _struct_fields(dtype) or []:
                    if have and field not in have:
                        con.execute(
                            f"ALTER TABLE {name} ADD COLUMN {_quote(column)}.{_quote(field)} {ftype}"
                        )
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM __mxd_incoming")

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        name = _quote(self.physical_name(table))
        with self._writing(frame) as con:
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __mxd_incoming")

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.name!r} is open read-only")

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None
