"""Delta Lake backend: one Delta table per feature under a root folder or URI.

The layout is Metaxy's: ``nested`` puts ``("demo", "raw")`` at ``demo/raw.delta``, ``flat``
at ``demo__raw.delta``. Every append is one Delta commit that only adds files, so readers
never see half a write and earlier files are never rewritten; a replace (hard delete) is
one overwrite commit.

Behaviour of deltalake (1.6) this module relies on, each covered by a test:

- appends with ``schema_mode="merge"`` match columns *and struct fields* by name, so an
  incoming ``{y, x}`` struct lands in a ``{x, y}`` column without reordering here;
- a naive timestamp column becomes ``timestamp_ntz`` and the table is upgraded to reader 3 /
  writer 7 with the ``timestampNtz`` feature, as Metaxy's ``feature_versions`` table is;
- an all-null column of Arrow type ``null`` would be stored as Delta ``void``, which other
  readers reject, so it gets a concrete type first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, SchemaMismatchError, TableNotFoundError

from mxd_cli.errors import StoreError, did_you_mean
from mxd_cli.store.base import MetadataStore, Table

_OPTIONS = ("root_path", "layout", "storage_options")
_LAYOUTS = ("nested", "flat")
_SUFFIX = ".delta"
_LOG_FOLDER = "_delta_log"


def _local_folder(root: str) -> str | None:
    """The local folder a root names, or None when it lives in object storage."""
    if "://" not in root:
        return root
    parsed = urlparse(root)
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    return None


def _storage_options(name: str, raw: object) -> dict[str, str]:
    """deltalake wants string values; TOML gives booleans and numbers too."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise StoreError(f"store {name!r}: 'storage_options' must be a table of strings")
    options: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            options[str(key)] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            options[str(key)] = str(value)
        else:
            raise StoreError(
                f"store {name!r}: storage_options.{key} must be a string, number or boolean"
            )
    return options


def _writable(frame: pl.DataFrame, stored: pl.Schema | None) -> pl.DataFrame:
    """Give columns types Delta stores the way the table (or Metaxy) expects.

    All-null columns take the stored column's type (else String). Timestamps become
    microseconds; a tz-aware one becomes UTC, or UTC wall-clock when the stored column is
    naive (Metaxy's system tables); a naive one written into a tz-aware column is read as
    UTC, the same rule DuckDB applies with its session time zone set to UTC.
    """
    known = stored or pl.Schema()
    fixes: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        target = known.get(name)
        column = pl.col(name)
        if dtype == pl.Null:
            fixes.append(column.cast(target or pl.String()))
        elif isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None and dtype.time_zone != "UTC":
                column = column.dt.convert_time_zone("UTC")
            if isinstance(target, pl.Datetime) and target.time_zone is None:
                column = column.dt.replace_time_zone(None)
            elif isinstance(target, pl.Datetime) and dtype.time_zone is None:
                column = column.dt.replace_time_zone("UTC")
            if dtype.time_unit != "us":
                column = column.dt.cast_time_unit("us")
            fixes.append(column)
    return frame.with_columns(fixes) if fixes else frame


class DeltaStore(MetadataStore):
    """Feature tables as Delta tables under ``root_path`` (a folder or an object-store URI).

    Example::

        store = DeltaStore("dev", {"root_path": "/data/store"})
        store.append(("demo", "raw"), frame)  # writes /data/store/demo/raw.delta
    """

    kind = "delta"

    def __init__(self, name: str, options: Mapping[str, Any], *, read_only: bool = False) -> None:
        super().__init__(name, read_only=read_only)
        for option in options:
            if option not in _OPTIONS:
                raise StoreError(
                    f"store {name!r}: unknown Delta option {option!r}",
                    hint=did_you_mean(option, _OPTIONS) or f"options: {', '.join(_OPTIONS)}",
                )
        root = options.get("root_path")
        if not isinstance(root, str) or not root:
            raise StoreError(
                f"store {name!r}: 'root_path' is required (a folder or a URI like s3://bucket/x)"
            )
        layout = options.get("layout", "nested")
        if layout not in _LAYOUTS:
            raise StoreError(
                f"store {name!r}: 'layout' must be 'nested' or 'flat', not {layout!r}",
                hint=did_you_mean(str(layout), _LAYOUTS),
            )
        self.root_path = root
        self.layout: str = layout
        self.storage_options = _storage_options(name, options.get("storage_options"))
        self._local = _local_folder(root)

    def location(self) -> str:
        return self.root_path

    def lock_path(self) -> Path | None:
        # Object stores have no atomic create-if-absent here: only local roots get a lock.
        return None if self._local is None else Path(self._local) / ".mxd-writer.lock"

    def physical_name(self, table: Table) -> str:
        if self.layout == "flat":
            return "__".join(table).replace("-", "_") + _SUFFIX
        return "/".join((*table[:-1], table[-1] + _SUFFIX))

    def table_uri(self, table: Table) -> str:
        """Where one table lives: a local folder path, or a URI under the root."""
        name = self.physical_name(table)
        if self._local is not None:
            return os.path.join(self._local, *name.split("/"))
        return self.root_path.rstrip("/") + "/" + name

    def tables(self) -> set[str]:
        """Physical names of the tables under a local root.

        Object storage cannot be listed cheaply, so a remote root lists nothing; ask
        :meth:`has` about the tables you need instead.
        """
        if self._local is None or not os.path.isdir(self._local):
            return set()
        found: set[str] = set()
        for folder, children, _files in os.walk(self._local):
            if folder == self._local or not folder.endswith(_SUFFIX):
                continue
            if _LOG_FOLDER in children:
                found.add(os.path.relpath(folder, self._local).replace(os.sep, "/"))
            children.clear()  # a table's own folders hold data files, not tables
        return found

    def has(self, table: Table) -> bool:
        uri = self.table_uri(table)
        return bool(DeltaTable.is_deltatable(uri, storage_options=self.storage_options))

    def _open(self, table: Table) -> DeltaTable | None:
        uri = self.table_uri(table)
        try:
            return DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise StoreError(f"cannot open Delta table {uri}: {exc}") from exc

    def scan(self, table: Table) -> pl.LazyFrame | None:
        # Opening directly (rather than is_deltatable first) reads the log once, not twice.
        found = self._open(table)
        if found is None:
            return None
        # Polars' native reader: lazy, with projection and predicate pushdown.
        return pl.scan_delta(found)

    def write_mark(self, table: Table) -> str | None:
        # Every write is a new commit in the table's log: its version is the mark.
        found = self._open(table)
        return "" if found is None else str(found.version())

    def append(self, table: Table, frame: pl.DataFrame) -> None:
        self._check_writable()
        found = self._open(table)
        stored = None if found is None else pl.scan_delta(found).collect_schema()
        self._write(table, found, _writable(frame, stored), mode="append", schema_mode="merge")

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        self._check_writable()
        found = self._open(table)
        stored = None if found is None else pl.scan_delta(found).collect_schema()
        data = _writable(frame, stored)
        if stored is not None and dict(stored) == dict(data.schema):
            # Same columns: keep the table's schema (and column order) untouched.
            self._write(table, found, data.select(stored.names()), mode="overwrite")
        else:
            self._write(table, found, data, mode="overwrite", schema_mode="overwrite")

    def _write(
        self,
        table: Table,
        found: DeltaTable | None,
        data: pl.DataFrame,
        *,
        mode: Literal["append", "overwrite"],
        schema_mode: Literal["merge", "overwrite"] | None = None,
    ) -> None:
        """One Delta commit; an open table is reused so the log is not read again."""
        uri = self.table_uri(table)
        try:
            write_deltalake(
                found if found is not None else uri,
                data.to_arrow(),
                mode=mode,
                schema_mode=schema_mode,
                storage_options=None if found is not None else self.storage_options,
            )
        except SchemaMismatchError as exc:
            raise StoreError(
                f"cannot write Delta table {uri}: {exc}",
                hint="a column has a different type than the one stored",
            ) from exc
        except Exception as exc:
            # deltalake casts incoming columns to the table's types and reports a failed
            # cast as a bare Exception; anything else is not a store problem.
            if type(exc) is not Exception and not isinstance(exc, (DeltaError, OSError)):
                raise
            raise StoreError(f"cannot write Delta table {uri}: {exc}") from exc

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.name!r} is open read-only")
