"""The metadata store interface and the rules every backend shares.

A store holds one append-only table per feature (Metaxy's format) plus system tables.
Backends implement a handful of physical operations (scan, append, replace, list); the
logical rules — which row of an id is current, soft deletes as tombstone copies — are
written once here so both backends agree by construction.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from mxd_cli.store import columns as c

Table = tuple[str, ...]
"""A table address: a feature key's parts, or a system table's parts."""

# mxd's own system tables. Their first part contains '__', which no feature key may, so
# they can never collide with a feature table or with Metaxy's system tables.
RUNS: Table = ("__mxd", "runs")
OBSERVATIONS: Table = ("__mxd", "observations")
CHECKPOINTS: Table = ("__mxd", "checkpoints")
FEATURE_VERSIONS: Table = c.FEATURE_VERSIONS_KEY

_ORDER_TS = "__mxd_order_ts"


def now_utc() -> datetime:
    """The current time as a tz-aware UTC datetime with microsecond precision."""
    return datetime.now(timezone.utc)


def latest_rows(
    frame: pl.LazyFrame,
    id_columns: Sequence[str],
    *,
    feature_version: str | None = None,
    include_deleted: bool = False,
) -> pl.LazyFrame:
    """Current rows: per id the row with the greatest coalesce(deleted_at, updated_at).

    Rows are first restricted to ``feature_version`` (when given); tombstones (rows with
    ``metaxy_deleted_at``) win over older rows and are then dropped unless asked for.
    """
    if feature_version is not None:
        frame = frame.filter(pl.col(c.FEATURE_VERSION) == feature_version)
    ids = list(id_columns)
    order = pl.coalesce(pl.col(c.DELETED_AT), pl.col(c.UPDATED_AT))
    frame = (
        frame.with_columns(order.alias(_ORDER_TS))
        .filter(pl.col(_ORDER_TS) == pl.col(_ORDER_TS).max().over(ids))
        .unique(subset=ids, keep="any")
        .drop(_ORDER_TS)
    )
    if not include_deleted:
        frame = frame.filter(pl.col(c.DELETED_AT).is_null())
    return frame


class MetadataStore(abc.ABC):
    """A metadata store: one backend instance bound to one location.

    ``read_only`` stores never create or change anything; reading a table that does not
    exist gives ``None``.
    """

    kind: str = "?"

    def __init__(self, name: str, *, read_only: bool = False) -> None:
        self.name = name
        self.read_only = read_only

    # physical operations, per backend
    @abc.abstractmethod
    def scan(self, table: Table) -> pl.LazyFrame | None:
        """Every physical row of a table (history included), or None when it does not exist."""

    @abc.abstractmethod
    def append(self, table: Table, frame: pl.DataFrame) -> None:
        """Append rows atomically, matching columns by name; new columns are added."""

    @abc.abstractmethod
    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        """Replace a table's rows atomically (used by hard deletes)."""

    @abc.abstractmethod
    def physical_name(self, table: Table) -> str:
        """The backend's name for a table (DuckDB table name, Delta folder path)."""

    @abc.abstractmethod
    def tables(self) -> set[str]:
        """Physical names of the tables present."""

    @abc.abstractmethod
    def location(self) -> str:
        """Where the store lives (a path or URI), for messages."""

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Group operations (one connection for all of them, where the backend has one).

        Keep sessions short in writers: readers in other processes wait while one is open.
        """
        yield

    def lock_path(self) -> Path | None:
        """Where the writer lock of this store lives (None: the backend cannot hold one)."""
        return None

    def write_mark(self, table: Table) -> str | None:
        """A cheap token that changes whenever the table's rows change ("" when the table
        does not exist), or None when the backend cannot give one without reading rows.

        Runs compare marks to skip features whose inputs did not change (see
        :mod:`mxd_cli.engine.runs`)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release resources; the store may not be used afterwards."""

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # logical operations, shared
    def has(self, table: Table) -> bool:
        return self.physical_name(table) in self.tables()

    def read(
        self,
        table: Table,
        id_columns: Sequence[str],
        *,
        feature_version: str | None = None,
        include_deleted: bool = False,
    ) -> pl.LazyFrame | None:
        """Current rows of a feature table (see :func:`latest_rows`), or None if absent."""
        frame = self.scan(table)
        if frame is None:
            return None
        return latest_rows(
            frame, id_columns, feature_version=feature_version, include_deleted=include_deleted
        )

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
        stamp = at or now_utc()
        tombstones = rows.with_columns(
            pl.lit(stamp, dtype=c.TIMESTAMP).alias(c.DELETED_AT),
            pl.lit(feature_version, dtype=pl.String).alias(c.FEATURE_VERSION),
            pl.lit(project_version, dtype=pl.String).alias(c.PROJECT_VERSION),
            pl.lit(materialization_id, dtype=pl.String).alias(c.MATERIALIZATION_ID),
        )
        self.append(table, tombstones)
        return rows.height

    def hard_delete(self, table: Table, keep: pl.Expr) -> int:
        """Remove physically every row for which ``keep`` is false; return how many went."""
        frame = self.scan(table)
        if frame is None:
            return 0
        everything = frame.collect()
        kept = everything.filter(keep.fill_null(True))
        removed = everything.height - kept.height
        if removed:
            self.replace(table, kept)
        return removed
