"""Writing a feature's rows in Metaxy's format: system columns, data versions, snapshots.

Computed rows are stamped with the feature and project versions, one timestamp per
commit, and the run id. Root rows are stamped in SQL and written from the engine; chunk
outputs of downstream assets are stamped in Polars and gathered into commit groups
(:class:`CommitGroup`), so that a run of tiny chunks does not pay a commit per chunk.

Columns keep the types they were first written with: an all-null column does not fix a
type (it is left out until values come), and a chunk whose column cannot be stored as the
stored type fails its asset, naming the column and both types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli import __version__
from mxd_cli.definitions.asset import AssetDefinition
from mxd_cli.engine.provenance import with_data_versions
from mxd_cli.engine.sql import alias, col, lit
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS, MetadataStore, now_utc, tombstones
from mxd_cli.versioning import GraphVersions, sha256_truncated


def _timestamp(at: datetime) -> exp.Expr:
    return exp.cast(exp.Literal.string(at.isoformat()), "TIMESTAMPTZ")


@dataclass(frozen=True)
class Stamp:
    """Rows with provenance made ready to append: data versions (recipe 12) and the system
    columns of one write. Plain data, so it travels to Spark executors."""

    node: FeatureNode
    algorithm: str
    length: int
    feature_version: str
    project_version: str
    materialization_id: str | None
    at: datetime

    def __call__(self, rows: pl.DataFrame) -> pl.DataFrame:
        frame = with_data_versions(rows.lazy(), self.node, self.algorithm, self.length)
        internal = [n for n in frame.collect_schema().names() if n.startswith("__mxd")]
        at = self.at
        return (
            frame.drop(internal)
            .with_columns(
                pl.lit(self.feature_version, dtype=pl.String).alias(c.FEATURE_VERSION),
                pl.lit(self.project_version, dtype=pl.String).alias(c.PROJECT_VERSION),
                pl.lit(at, dtype=c.TIMESTAMP).alias(c.CREATED_AT),
                pl.lit(at, dtype=c.TIMESTAMP).alias(c.UPDATED_AT),
                pl.lit(None, dtype=c.TIMESTAMP).alias(c.DELETED_AT),
                pl.lit(self.materialization_id, dtype=pl.String).alias(c.MATERIALIZATION_ID),
            )
            .collect(engine="in-memory")
        )


class FeatureWriter:
    """Appends rows of one feature, stamped with the current versions."""

    def __init__(
        self,
        store: MetadataStore,
        node: FeatureNode,
        versions: GraphVersions,
        *,
        project: str,
        algorithm: str,
        length: int,
        materialization_id: str | None = None,
        graph: FeatureGraph | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.versions = versions
        self.project = project
        self.algorithm = algorithm
        self.length = length
        self.materialization_id = materialization_id
        self.graph = graph
        self._snapshot_done = False
        self._checked: pl.Schema | None = None  # an output schema found storable

    @property
    def feature_version(self) -> str:
        return self.versions.feature_version(self.node.key)

    @property
    def table(self) -> tuple[str, ...]:
        return self.node.key.parts

    # ---- stamping ----------------------------------------------------------------------
    def stamp(self, rows: pl.DataFrame, at: datetime) -> pl.DataFrame:
        """Rows with provenance, ready to append: data versions and system columns set."""
        return self.stamping(at)(rows)

    def stamping(self, at: datetime) -> Stamp:
        """What :meth:`stamp` does, as a picklable function (for executors)."""
        return Stamp(
            self.node,
            self.algorithm,
            self.length,
            self.feature_version,
            self.versions.project_version,
            self.materialization_id,
            at,
        )

    def stamp_query(self, query: exp.Expr, columns: Sequence[str], at: datetime) -> exp.Select:
        """The same stamping in SQL, over rows that already carry data versions."""
        stamped = {
            c.FEATURE_VERSION: lit(self.feature_version),
            c.PROJECT_VERSION: lit(self.versions.project_version),
            c.CREATED_AT: _timestamp(at),
            c.UPDATED_AT: _timestamp(at),
            c.DELETED_AT: exp.cast(exp.null(), "TIMESTAMPTZ"),
            c.MATERIALIZATION_ID: (
                lit(self.materialization_id)
                if self.materialization_id is not None
                else exp.cast(exp.null(), "VARCHAR")
            ),
        }
        kept = [n for n in columns if not n.startswith("__mxd") and n not in stamped]
        source = query.subquery("__mxd_rows", copy=False) if isinstance(query, exp.Query) else query
        return exp.select(
            *(col(n) for n in kept), *(alias(v, n) for n, v in stamped.items())
        ).from_(source, copy=False)

    # ---- checks ------------------------------------------------------------------------
    def check_types(self, frame: pl.DataFrame | pa.Schema, asset: AssetDefinition | None) -> None:
        """Every column can be stored as the type it was stored with before."""
        mine = frame.schema if isinstance(frame, pl.DataFrame) else None
        if mine is not None and mine == self._checked:
            return  # (the chunks of a run mostly share one schema)
        stored = self.store.schema(self.table)
        if stored is None:
            return
        incoming = frame.to_arrow().schema if isinstance(frame, pl.DataFrame) else frame
        for name in incoming.names:
            if name not in stored.names:
                continue
            new, old = incoming.field(name).type, stored.field(name).type
            if not _storable(new, old):
                who = f"asset {asset.name!r} of {self.node.key}" if asset else str(self.node.key)
                raise AssetError(
                    f"{who}: column {name!r} is {new} in this output but {old} in the store",
                    hint=f"return {name!r} as {old} (cast it), or rebuild the feature",
                    location=None if asset is None else str(asset.origin),
                )
        self._checked = mine

    # ---- writes ------------------------------------------------------------------------
    def write(self, rows: pl.DataFrame, at: datetime | None = None) -> int:
        """Append computed rows (they carry provenance columns); return how many."""
        if rows.height == 0:
            return 0
        self.record_snapshot()
        return self.store.append(self.table, self.stamp(rows, at or now_utc()))

    def write_query(self, query: exp.Expr, columns: Sequence[str]) -> int:
        """Append the rows of a query (with provenance and data versions), stamped in SQL."""
        self.record_snapshot()
        return self.store.append_query(self.table, self.stamp_query(query, columns, now_utc()))

    def soft_delete(self, rows: pl.DataFrame, at: datetime | None = None) -> int:
        """Tombstone current rows (as read from the store)."""
        return self.store.soft_delete(
            self.table,
            rows,
            feature_version=self.feature_version,
            project_version=self.versions.project_version,
            at=at,
            materialization_id=self.materialization_id,
        )

    def soft_delete_query(self, query: exp.Expr, columns: Sequence[str]) -> int:
        """Tombstone the current rows a query gives (every column), written from SQL."""
        source = query.subquery("__mxd_gone", copy=False) if isinstance(query, exp.Query) else query
        copies = tombstones(
            source,
            columns,
            feature_version=self.feature_version,
            project_version=self.versions.project_version,
            at=now_utc(),
            materialization_id=self.materialization_id,
        )
        return self.store.append_query(self.table, copies)

    # ---- graph snapshots ---------------------------------------------------------------
    def record_snapshot(self) -> None:
        """Record the graph snapshot of this project version: a ``feature_versions`` row
        for every feature of the project (as Metaxy's push does), once."""
        if self._snapshot_done:
            return
        self._snapshot_done = True
        record_snapshot(self.store, self.graph, self.versions, self.project, also=self.node)


def record_snapshot(
    store: MetadataStore,
    graph: FeatureGraph | None,
    versions: GraphVersions,
    project: str,
    *,
    also: FeatureNode | None = None,
) -> int:
    """Append the ``feature_versions`` rows of this project version that are missing (every
    feature of ``graph``; ``also`` when no graph is given). Returns the rows added."""
    nodes = [graph[k] for k in graph.order] if graph is not None else [also] if also else []
    existing = store.scan(FEATURE_VERSIONS)
    have: set[tuple[str, str]] = set()
    if existing is not None:
        rows = (
            existing.filter(
                (pl.col("project") == project)
                & (pl.col("metaxy_project_version") == versions.project_version)
            )
            .select("feature_key", "metaxy_feature_version")
            .collect()
        )
        have = set(rows.iter_rows())
    missing = [
        n
        for n in nodes
        if n is not None and (str(n.key), versions.feature_version(n.key)) not in have
    ]
    if not missing:
        return 0
    at = now_utc().replace(tzinfo=None)
    frame = pl.concat([snapshot_row(n, versions, project, at) for n in missing])
    store.append(FEATURE_VERSIONS, frame)
    return frame.height


def snapshot_row(
    node: FeatureNode, versions: GraphVersions, project: str, at: datetime | None = None
) -> pl.DataFrame:
    spec_json = json.dumps(node.spec.to_metaxy_dict())
    schema = {"id_columns": list(node.spec.id_columns), "columns": list(node.definition.columns)}
    definition_version = sha256_truncated(
        versions[node.key].feature_spec_version + json.dumps(schema, sort_keys=True),
        versions.truncation,
    )
    cls = node.definition.cls
    class_path = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else ""
    row = {
        "project": project,
        "feature_key": str(node.key),
        "metaxy_feature_version": versions.feature_version(node.key),
        "metaxy_definition_version": definition_version,
        "recorded_at": at or now_utc().replace(tzinfo=None),
        "feature_spec": spec_json,
        "feature_schema": json.dumps(schema),
        "feature_class_path": class_path,
        "metaxy_project_version": versions.project_version,
        "tags": json.dumps({"mxd": json.dumps({"version": __version__})}),
        "deleted_at": None,
    }
    return pl.DataFrame([row], schema=c.FEATURE_VERSIONS_SCHEMA)


def _storable(new: pa.DataType, old: pa.DataType) -> bool:
    """Whether values of type ``new`` can go into a column of type ``old`` unchanged."""
    if new == old or pa.types.is_null(new):
        return True
    if pa.types.is_integer(new) and (pa.types.is_integer(old) or pa.types.is_floating(old)):
        return True
    if pa.types.is_floating(new) and pa.types.is_floating(old):
        return True
    if _textual(new) and _textual(old):
        return True
    if pa.types.is_timestamp(new) and pa.types.is_timestamp(old):
        return True
    if pa.types.is_dictionary(new):
        return _storable(new.value_type, old)
    if pa.types.is_struct(new) and pa.types.is_struct(old):
        fields = {old.field(i).name: old.field(i).type for i in range(old.num_fields)}
        return all(
            _storable(new.field(i).type, fields[new.field(i).name])
            for i in range(new.num_fields)
            if new.field(i).name in fields
        )
    if _listish(new) and _listish(old):
        return _storable(new.value_type, old.value_type)
    return False


def _textual(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _listish(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t))


class CommitGroup:
    """Chunk outputs gathered until a commit is due (``interval`` seconds since the last,
    or ``max_rows`` rows): one append per group, and progress moves when it is durable.
    ``committed(rows_in, samples, written)``: samples handed to the asset, samples its
    output holds, physical rows written."""

    def __init__(
        self,
        commit: Callable[[pl.DataFrame], int],
        *,
        interval: float = 0.5,
        max_rows: int = 200_000,
        committed: Callable[[int, int, int], None] = lambda rows_in, samples, written: None,
    ) -> None:
        self._commit = commit
        self.interval = interval
        self.max_rows = max_rows
        self._committed = committed
        self._frames: list[pl.DataFrame] = []
        self._rows_in = 0
        self._samples = 0
        self._buffered = 0
        self._since = time.monotonic()
        self.written = 0

    def add(self, frame: pl.DataFrame, rows_in: int, samples: int | None = None) -> None:
        """``frame``: the output for ``rows_in`` samples of the increment; ``samples``:
        how many samples it holds (default: one per row)."""
        self._frames.append(frame)
        self._rows_in += rows_in
        self._samples += frame.height if samples is None else samples
        self._buffered += frame.height

    def due(self) -> bool:
        return bool(self._frames) and (
            self._buffered >= self.max_rows or time.monotonic() - self._since >= self.interval
        )

    def flush(self) -> int:
        """Write what is gathered (one commit); returns the rows written."""
        if not self._frames:
            self._since = time.monotonic()
            return 0
        frames, rows_in, samples = self._frames, self._rows_in, self._samples
        self._frames, self._rows_in, self._samples, self._buffered = [], 0, 0, 0
        # (One contiguous frame: Arrow conversion and DuckDB's insert of hundreds of
        # small chunks' pieces cost 2-3x more.)
        data = (
            frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed").rechunk()
        )
        written = self._commit(data)
        self.written += written
        self._since = time.monotonic()
        self._committed(rows_in, samples, written)
        return written
