"""DuckDB backend: one embedded database file (the default store).

A store keeps one connection for its life: increments run as SQL inside the file, and a
writer commits chunk after chunk on it. DuckDB lets one process write a file, or many read
it. So that readers (``status``, ``observe``) never wait long for a long ``materialize``,
a reader that finds the file busy leaves a note in ``<database>.mxd-readers/``; the writer
looks for notes at each commit and, when it finds one, closes the file until the reader is
done, then carries on (:meth:`DuckDBStore.yield_to_readers`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.errors import ConfigError, StoreError, did_you_mean
from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore, Table, col, stamped_after
from mxd_cli.store.registry import Backend, Option, register
from mxd_cli.store.sql_engine import SESSION, DuckDBEngine, SqlEngine, duckdb_engine

if TYPE_CHECKING:
    import duckdb

# Settings mxd always applies: it never downloads or loads extensions on its own (a store
# pointed at a SQLite or Parquet file must not make DuckDB fetch code from the network).
FIXED_SETTINGS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
# Files mxd creates stay readable by the DuckDB that Metaxy 0.1.11 pins (1.4): a newer
# storage format would lock Metaxy out of the store (a store setting may choose another).
STORAGE_COMPATIBILITY = {"storage_compatibility_version": "v1.4.0"}
# DuckDB's own default lets its buffers grow to 80% of the machine, so a run's memory
# would grow with N (15.7 GiB for a first run at 10M samples). Bounded, it spills to
# ``<database>.tmp`` instead: peak RSS 2.5 GiB there, ~25% slower. A store setting
# (``config = { memory_limit = "8GB" }``) chooses otherwise. (Not for ``:memory:``
# databases: their tables live in those buffers.)
DEFAULT_SETTINGS = {"memory_limit": "1GB"}


def _check_options(store: str, options: Mapping[str, Any], where: Any) -> None:
    database = options.get("database")
    if isinstance(database, str) and database.startswith(("md:", "motherduck:")):
        raise ConfigError(
            f"store '{store}': MotherDuck databases ({database!r}) are not supported by mxd",
            hint="point 'database' at a local DuckDB file",
            location=where("database"),
        )
    settings = options.get("config") or {}
    for key, value in settings.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(
                f"store '{store}': DuckDB setting config.{key} must be a string, number or "
                f"boolean, got {value!r}",
                location=where("config"),
            )
        if key in FIXED_SETTINGS and value not in (False, "false", "False", 0):
            raise ConfigError(
                f"store '{store}': mxd keeps DuckDB setting '{key}' off",
                hint="mxd never installs or loads DuckDB extensions by itself",
                location=where("config"),
            )
    if settings:
        import duckdb

        known = {
            row[0]
            for row in duckdb.connect(":memory:")
            .execute("SELECT name FROM duckdb_settings()")
            .fetchall()
        }
        for key in settings:
            if key not in known:
                raise ConfigError(
                    f"store '{store}': unknown DuckDB setting config.{key}",
                    hint=did_you_mean(key, sorted(known)) or "see DuckDB's duckdb_settings()",
                    location=where("config"),
                )


BACKEND = register(
    Backend(
        type="duckdb",
        aliases=(
            "metaxy.ext.duckdb.DuckDBMetadataStore",
            "metaxy.ext.duckdb.metadata_store.DuckDBMetadataStore",
            "metaxy.ext.duckdb.legacy_store.DuckDBMetadataStore",
            "metaxy.ext.metadata_stores.duckdb.DuckDBMetadataStore",
            "metaxy.metadata_store.duckdb.DuckDBMetadataStore",
        ),
        options=(
            Option(
                "database",
                "path",
                "a DuckDB file, relative to the config file (or ':memory:')",
                required=True,
            ),
            Option(
                "config",
                "table",
                'DuckDB settings, e.g. { threads = 2, memory_limit = "4GB" } (mxd bounds'
                " memory_limit to 1GB unless set)",
            ),
            Option(
                "extensions",
                "strings",
                "",
                unsupported="mxd computes its hashes itself and loads no extensions",
                default=[],
            ),
            Option("ducklake", "table", "", unsupported="DuckLake attachments"),
            Option(
                "versioning_engine",
                "string",
                "Metaxy's engine choice; mxd always computes inside the store",
                choices=("auto", "native", "polars"),
            ),
            Option(
                "auto_create_tables", "boolean", "", unsupported="mxd creates tables", default=True
            ),
            Option("table_prefix", "string", "", unsupported="table name prefixes", default=""),
            Option("connection_string", "string", "", unsupported="Ibis connection strings"),
            Option("connection_params", "table", "", unsupported="Ibis connection parameters"),
            Option("backend", "string", "", unsupported="Ibis backends"),
        ),
        opener="mxd_cli.store.duckdb:DuckDBStore",
        metaxy_hash_algorithms=("xxhash32", "xxhash64", "xxh3_64", "md5"),
        check=_check_options,
    )
)

_BUSY_MESSAGES = ("Could not set lock", "Conflicting lock", "database is locked")


def _writable(frame: pl.DataFrame, stored: pa.Schema | None) -> pl.DataFrame:
    """Types DuckDB stores as Metaxy expects: timestamps in microseconds, tz-aware ones in
    UTC. An all-null column takes the stored column's type, or is left out until a chunk
    brings values (so the first chunk's nulls never fix a column's type)."""
    casts, dropped = [], []
    known = {} if stored is None else {f.name: f.type for f in stored}
    for name, dtype in frame.schema.items():
        if dtype == pl.Null:
            if name in known:
                stored_type = c.polars_types(pa.schema([(name, known[name])]))[name]
                casts.append(pl.col(name).cast(stored_type))
            else:
                dropped.append(name)
        elif isinstance(dtype, pl.Datetime):
            column = pl.col(name)
            if dtype.time_zone is not None:
                column = column.dt.convert_time_zone("UTC")
            casts.append(column.dt.cast_time_unit("us"))
    frame = frame.drop(dropped) if dropped else frame
    return frame.with_columns(casts) if casts else frame


def _check_intact(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Refuse a file shorter than the blocks it uses (truncated by a copy, a full disk...):
    DuckDB would fail on the first read of a missing block, maybe halfway through a write."""
    rows = con.execute("PRAGMA database_size").fetchall()
    if not rows or not os.path.exists(path):
        return
    # (Free blocks at the end may be cut off by DuckDB itself: count the used ones.)
    block_size, used_blocks = int(rows[0][2]), int(rows[0][4])
    expected = _HEADER_BYTES + block_size * used_blocks
    actual = os.path.getsize(path)
    if used_blocks and actual < expected:
        raise StoreError(
            f"DuckDB store {path} is damaged: it holds {used_blocks} blocks in use "
            f"({expected} bytes) but the file has {actual} bytes",
            hint="restore the file from a copy; mxd writes nothing to a damaged store",
        )


_HEADER_BYTES = 3 * 4096  # DuckDB's main header and its two database headers


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


class DuckDBStore(MetadataStore):
    """Feature tables named ``a__b`` inside one DuckDB database.

    Example::

        with DuckDBStore("dev", {"database": ".mxd/dev.duckdb"}) as store:
            store.append(("demo", "raw"), frame)
            store.read(("demo", "raw"), ["id"]).collect()
    """

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
        BACKEND.validate(name, options, lambda key: None)
        database: str = options["database"]
        self.database = database
        self.busy_timeout = busy_timeout
        self._settings = {
            **STORAGE_COMPATIBILITY,
            **(DEFAULT_SETTINGS if database != ":memory:" else {}),
            **dict(options.get("config") or {}),
            **FIXED_SETTINGS,
        }
        self._memory = database == ":memory:"
        self._engine: DuckDBEngine | None = None
        self._writer: duckdb.DuckDBPyConnection | None = None
        self._tables: set[str] | None = None
        self._schemas: dict[str, pa.Schema] = {}
        self._marks: dict[str, str] = {}  # write marks taken since the table's last write
        self._verified = False
        self._bound: dict[int, str] = {}
        if self._memory:
            logging.getLogger("mxd.store").warning(
                "store %r is an in-memory DuckDB database: nothing is kept after this command",
                name,
            )

    # ---- where it lives ----------------------------------------------------------------
    def location(self) -> str:
        return self.database

    def lock_path(self) -> Path | None:
        # Keyed by the resolved file, so every path (symlinks, ..) to it shares one lock.
        if self._memory:
            return None
        return Path(os.path.realpath(self.database) + ".mxd-lock")

    def _readers_folder(self) -> Path:
        return Path(os.path.realpath(self.database) + ".mxd-readers")

    def physical_name(self, table: Table) -> str:
        return "__".join(table).replace("-", "_")

    @property
    def _exists(self) -> bool:
        return self._memory or Path(self.database).exists()

    # ---- the connection ----------------------------------------------------------------
    def engine(self) -> DuckDBEngine:
        if self._engine is None:
            self._engine = DuckDBEngine(self._connect(), location=self.database)
        return self._engine

    def _connect(self, *, wait: float | None = None) -> duckdb.DuckDBPyConnection:
        import duckdb

        if self._memory or (self.read_only and not self._exists):
            # (A read-only store whose file does not exist yet: an empty database.)
            con = duckdb.connect(":memory:", config=self._settings)
            con.execute(SESSION)
            return con
        if os.path.isdir(self.database):
            raise StoreError(
                f"DuckDB store {self.database} is a directory, not a database file",
                hint="point 'database' at a file path",
            )
        if not self.read_only:
            try:
                Path(self.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of DuckDB store {self.database}: {exc.strerror}"
                ) from exc
        deadline = time.monotonic() + (self.busy_timeout if wait is None else wait)
        delay, note = 0.01, None
        try:
            while True:
                try:
                    con = duckdb.connect(
                        self.database, read_only=self.read_only, config=self._settings
                    )
                    break
                except duckdb.Error as exc:
                    busy = isinstance(exc, duckdb.IOException) and any(
                        m in str(exc) for m in _BUSY_MESSAGES
                    )
                    if not busy or time.monotonic() > deadline:
                        hint = "another mxd process is writing; try again later" if busy else None
                        raise StoreError(
                            f"cannot open DuckDB store {self.database}: {exc}", hint=hint
                        ) from exc
                    if note is None and self.read_only:
                        note = self._leave_note()
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
        finally:
            if note is not None:
                note.unlink(missing_ok=True)
        try:
            con.execute(SESSION)
            if not self._verified:
                _check_intact(con, self.database)
                self._verified = True
        except BaseException:
            con.close()
            raise
        return con

    def _leave_note(self) -> Path | None:
        """Tell a writer holding the file that a reader waits (see the module docstring)."""
        folder = self._readers_folder()
        try:
            folder.mkdir(exist_ok=True)
            note = folder / str(os.getpid())
            note.touch()
            return note
        except OSError:
            return None

    def _readers_waiting(self) -> bool:
        folder = self._readers_folder()
        try:
            names = os.listdir(folder)
        except OSError:
            return False
        waiting = False
        for name in names:
            pid = int(name) if name.isdigit() else None
            if pid is not None and _alive(pid):
                waiting = True
            else:
                (folder / name).unlink(missing_ok=True)
        return waiting

    def yield_to_readers(self) -> bool:
        if self._memory or self._engine is None or self.read_only:
            return False
        if not self._readers_waiting():
            return False
        self._close_connections()
        time.sleep(0.05)  # let the waiting readers in
        connection = self._connect(wait=max(self.busy_timeout, 600.0))
        self._engine = DuckDBEngine(connection, location=self.database)
        self._tables = None
        return True

    def _writer_con(self) -> duckdb.DuckDBPyConnection:
        """A cursor for writes: they may run while a result stream is open on the engine."""
        if self._writer is None:
            self._writer = self.engine().con.cursor()
            self._writer.execute(SESSION)
        return self._writer

    # ---- tables ------------------------------------------------------------------------
    def tables(self) -> set[str]:
        if self._tables is None:
            # (On the writer cursor: the engine's connection may be streaming a result.)
            rows = (
                self._writer_con()
                .execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_catalog = current_database() AND table_schema = 'main'"
                )
                .fetchall()
            )
            self._tables = {r[0] for r in rows}
        return set(self._tables)

    def ref(self, table: Table) -> exp.Table | None:
        name = self.physical_name(table)
        if name not in self.tables():
            return None
        return exp.Table(this=exp.to_identifier(name, quoted=True))  # (built, not parsed)

    def row_addressable(self, table: Table) -> bool:
        return True  # (its own tables, and those attached to another engine)

    def bind(self, engine: SqlEngine, alias: str) -> Callable[[Table], exp.Table | None]:
        """Attach this database file read-only to ``engine`` under ``alias``."""
        engine = duckdb_engine(engine, self.name, self.kind)
        if not self._exists or self._memory:
            return lambda table: None
        key = id(engine)
        if key not in self._bound:
            path = exp.Literal.string(os.path.realpath(self.database))
            engine.execute(f"ATTACH {path.sql('duckdb')} AS {_quoted(alias)} (READ_ONLY)")
            self._bound[key] = alias
        names = {
            r[0]
            for r in engine.rows(
                "SELECT table_name FROM information_schema.tables "
                f"WHERE table_catalog = {exp.Literal.string(alias).sql('duckdb')}"
            )
        }

        def ref(table: Table) -> exp.Table | None:
            name = self.physical_name(table)
            if name not in names:
                return None
            return exp.Table(
                this=exp.to_identifier(name, quoted=True),
                db=exp.to_identifier("main", quoted=True),
                catalog=exp.to_identifier(alias, quoted=True),
            )

        return ref

    def schema(self, table: Table) -> pa.Schema | None:
        name = self.physical_name(table)
        if name not in self._schemas:
            ref = self.ref(table)
            if ref is None:
                return None
            sql = exp.select("*").from_(ref).limit(0).sql("duckdb", identify=True)
            found = self._writer_con().sql(sql).to_arrow_table().schema
            self._schemas[name] = found
        return self._schemas[name]

    def refresh(self, table: Table) -> None:
        self._schemas.pop(self.physical_name(table), None)
        self._marks.pop(self.physical_name(table), None)
        self._tables = None

    # ---- change tracking ---------------------------------------------------------------
    def write_mark(self, table: Table) -> str | None:
        # Rows are only appended (or deleted by hard deletes): the row count and the newest
        # timestamps together change with every write.
        # A command asks for a table's mark once per feature reading it; every write of
        # this store refreshes the table, and other writers wait for the lock.
        name = self.physical_name(table)
        if name in self._marks:
            return self._marks[name]
        ref = self.ref(table)
        if ref is None:
            return ""
        columns = set(self.schema(table).names)  # type: ignore[union-attr]
        stamps = [n for n in (c.UPDATED_AT, c.DELETED_AT) if n in columns]
        maxima = [exp.cast(exp.func("max", col(n)), "VARCHAR") for n in stamps]
        row = self.engine().rows(exp.select(exp.func("count", exp.Star()), *maxima).from_(ref))[0]
        self._marks[name] = "|".join(str(v) for v in row)
        return self._marks[name]

    def later_than_mark(self, table: Table, mark: str) -> exp.Expr | None:
        if mark == "":
            return exp.true()
        if self._newer(mark) is None:
            return None
        # The mark holds the greatest of each stamp then: a row whose current-row stamp
        # exceeds both comes after every row held then.
        after = [stamped_after(then) for then in mark.split("|")[1:] if then != "None"]
        return exp.and_(*after) if after else exp.true()

    def _newer(self, mark: str) -> tuple[int, list[exp.Expr]] | None:
        """The row count a mark recorded, and the conditions (one per stamp column, any of
        them) of the rows written after it."""
        parts = mark.split("|")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        newer: list[exp.Expr] = []
        for column, then in zip((c.UPDATED_AT, c.DELETED_AT), parts[1:], strict=True):
            if then == "None":
                newer.append(col(column).is_(exp.null()).not_())
            else:
                stamp = exp.cast(exp.Literal.string(then), "TIMESTAMPTZ")
                newer.append(exp.func("coalesce", col(column) > stamp, exp.false()))
        return int(parts[0]), newer

    def changed_since(self, table: Table, mark: str) -> exp.Expr | None:
        ref = self.ref(table)
        if mark == "":
            return exp.select("*").from_(ref) if ref is not None else None
        found = self._newer(mark)
        if ref is None or found is None:
            return None
        count_then, conditions = found
        newer = exp.or_(*(n.copy() for n in conditions))
        is_newer = exp.case().when(newer, exp.Literal.number(1))
        total, since = self.engine().rows(
            exp.select(
                exp.func("count", exp.Star()),
                exp.Sum(this=is_newer.else_(exp.Literal.number(0))),
            ).from_(ref)
        )[0]
        # Exact only when every row since the mark is newer than it (no rewrite, no row
        # with an older stamp): then the row counts add up.
        if total - count_then != (since or 0):
            return None
        # One select per stamp column (each the rows it alone adds), so that each condition
        # reaches the scan and its zone maps: an OR of two columns is a filter over every
        # row of the table (0.2 s at 10M rows, against 5 ms).
        union: exp.Query | None = None
        for i, condition in enumerate(conditions):
            earlier = [exp.not_(e.copy()) for e in conditions[:i]]
            part = exp.select("*").from_(ref.copy()).where(exp.and_(condition.copy(), *earlier))
            union = part if union is None else exp.union(union, part, distinct=False)
        return union

    def rows_before(self, table: Table, mark: str) -> exp.Expr | None:
        ref = self.ref(table)
        newer = self.written_after(table, mark)
        if ref is None or newer is None:
            return None
        return exp.select("*").from_(ref).where(exp.not_(newer))

    def written_after(self, table: Table, mark: str) -> exp.Expr | None:
        found = self._newer(mark) if mark != "" else None
        return None if found is None else exp.or_(*found[1])

    # ---- writes ------------------------------------------------------------------------
    def append(self, table: Table, data: pl.DataFrame | pa.Table) -> int:
        self.check_writable()
        frame = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        if frame.height == 0:
            return 0
        frame = _writable(frame, self.schema(table))
        name = _quoted(self.physical_name(table))
        con = self._writer_con()
        arrow = frame.to_arrow()
        con.register("__mxd_incoming", arrow)
        try:
            with self._transaction(con, table, "write to"):
                self._prepare(con, name, "__mxd_incoming")
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM __mxd_incoming")
        finally:
            con.unregister("__mxd_incoming")
        return frame.height

    def append_query(self, table: Table, query: exp.Expr) -> int:
        self.check_writable()
        engine = self.engine()
        name = _quoted(self.physical_name(table))
        con = engine.con
        sql = engine.render(query)
        engine._ensure_functions(con)
        with self._transaction(con, table, "write to"):
            con.execute(f"CREATE TEMP VIEW __mxd_query AS {sql}")
            self._prepare(con, name, "__mxd_query")
            inserted = con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM __mxd_query")
            count = inserted.fetchall()[0][0]
            con.execute("DROP VIEW __mxd_query")
        return int(count)

    @contextmanager
    def _transaction(
        self, con: duckdb.DuckDBPyConnection, table: Table, doing: str
    ) -> Iterator[None]:
        """The block as one transaction on ``con``: committed, or rolled back (a DuckDB
        error raised as a StoreError); the table's cached state is refreshed either way."""
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except _duckdb_error() as exc:
            raise StoreError(f"cannot {doing} DuckDB store {self.database}: {exc}") from exc
        finally:
            self.refresh(table)

    def _prepare(self, con: duckdb.DuckDBPyConnection, name: str, source: str) -> None:
        """Create the table from ``source``'s columns, or add the columns and struct fields
        it lacks (inside the caller's transaction)."""
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {source} LIMIT 0")
        present = con.sql(f"SELECT * FROM {name} LIMIT 0")
        have = dict(zip(present.columns, present.types, strict=True))
        incoming = con.sql(f"SELECT * FROM {source} LIMIT 0")
        for column, dtype in zip(incoming.columns, incoming.types, strict=True):
            if column not in have:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {_quoted(column)} {dtype}")
                continue
            # Struct columns gain fields in place (a feature gained a field); INSERT BY
            # NAME would otherwise drop the new field silently.
            if dtype.id == "struct" and have[column].id == "struct":
                stored = {f for f, _ in have[column].children}
                for field, ftype in dtype.children:
                    if field not in stored:
                        con.execute(
                            f"ALTER TABLE {name} ADD COLUMN {_quoted(column)}.{_quoted(field)} "
                            f"{ftype}"
                        )

    def delete_where(self, table: Table, condition: exp.Expr) -> int:
        self.check_writable()
        ref = self.ref(table)
        if ref is None:
            return 0
        engine = self.engine()
        query = exp.delete(ref, where=condition)
        con = engine.con
        with self._transaction(con, table, "delete from"):
            removed = con.execute(engine.render(query)).fetchall()[0][0]
        return int(removed)

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        self.check_writable()
        name = _quoted(self.physical_name(table))
        con = self._writer_con()
        con.register("__mxd_incoming", _writable(frame, None).to_arrow())
        try:
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __mxd_incoming")
        finally:
            con.unregister("__mxd_incoming")
            self.refresh(table)

    # ---- lifecycle ---------------------------------------------------------------------
    def _close_connections(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def close(self) -> None:
        self._close_connections()


def _nothing() -> exp.Select:
    return exp.select("*").from_(exp.values([(exp.null(),)], "__mxd_none")).where(exp.false())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _duckdb_error() -> type[Exception]:
    import duckdb

    error: type[Exception] = duckdb.Error
    return error
