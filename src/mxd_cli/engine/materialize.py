"""A materialize run: each selected feature in topological order, only its increment.

Per feature: resolve the increment (root features call their asset for every current
sample first), hand new and stale samples to the asset chunk by chunk, check each output,
attach provenance and append it — each chunk is durable before the next starts — then
soft-delete orphaned samples. A feature whose inputs (code, upstream tables, own table,
root source token) are exactly as after its last complete run is up to date without
reading a row (see :class:`~mxd_cli.engine.runs.Checkpoints`).

Dry runs use the same code against an in-memory overlay of the store, so they report the
exact counts a real run would, downstream features included, and write nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

import polars as pl

from mxd_cli.config import StoreConfig
from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.assets import call_asset, root_samples
from mxd_cli.engine.filters import Filter
from mxd_cli.engine.hashing import hash_expr
from mxd_cli.engine.increment import Increment, resolve_increment
from mxd_cli.engine.output import attach_provenance, check_ids
from mxd_cli.engine.reader import CurrentRows
from mxd_cli.engine.runs import Checkpoints, RunRecord
from mxd_cli.engine.writer import FeatureWriter
from mxd_cli.errors import AssetError, FilterError, did_you_mean
from mxd_cli.graph import FeatureNode
from mxd_cli.project import Project
from mxd_cli.store import columns as c
from mxd_cli.store.base import RUNS, MetadataStore, now_utc

_SAMPLE_RANK = "__mxd_sample_rank"


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides the project and the store."""

    selectors: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    partition: tuple[str, str] | None = None
    full: bool = False
    dry_run: bool = False
    fail_fast: bool = False
    chunk_size: int | None = None
    keep_orphans: bool = False

    @property
    def restricted(self) -> bool:
        """Only some samples are considered: the run says nothing about the others."""
        return bool(self.filters or self.keys or self.sample is not None or self.partition)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False, (), 0)}


@dataclass
class FeatureResult:
    """How one feature fared in a run (the materialize JSON shape, per feature)."""

    feature: str
    status: str = "pending"  # success | failed | skipped | up_to_date | interrupted
    new: int = 0
    stale: int = 0
    orphaned: int = 0
    unchanged: int = 0
    written: int = 0
    deleted: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class RunResult:
    run_id: str
    status: str  # success | failed | partial | interrupted
    dry_run: bool
    store: str
    started_at: datetime
    features: list[FeatureResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(f.written for f in self.features)

    @property
    def deleted(self) -> int:
        return sum(f.deleted for f in self.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "store": self.store,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "written": self.written,
            "deleted": self.deleted,
            "features": [f.to_json() for f in self.features],
        }


class Listener(Protocol):
    """Progress hooks (the CLI draws bars from them); every call comes from the run's thread."""

    def feature_started(self, feature: str, total: int) -> None: ...
    def rows_done(self, feature: str, rows: int) -> None: ...
    def feature_finished(self, result: FeatureResult) -> None: ...


class Quiet:
    """A listener that shows nothing."""

    def feature_started(self, feature: str, total: int) -> None:
        pass

    def rows_done(self, feature: str, rows: int) -> None:
        pass

    def feature_finished(self, result: FeatureResult) -> None:
        pass


class _Stopped(Exception):
    """A stop was requested between two chunks."""


def new_run_id() -> str:
    return now_utc().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class Run:
    """One materialize run over a store. ``execute()`` returns the :class:`RunResult`."""

    def __init__(
        self,
        project: Project,
        store: MetadataStore,
        store_config: StoreConfig,
        options: RunOptions,
        *,
        fallbacks: Sequence[MetadataStore] = (),
        restrict: Filter | None = None,
        listener: Listener | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        run_id: str | None = None,
    ) -> None:
        self.project = project
        self.graph = project.graph
        self.store = store
        self.config = store_config
        self.options = options
        self.filter = restrict
        self.listener = listener or Quiet()
        self.should_stop = should_stop
        self.run_id = run_id or new_run_id()
        self.reader = CurrentRows(store, project.graph, project.versions, fallbacks)
        self.checkpoints = Checkpoints(store, project.config.project)
        self.results: dict[FeatureKey, FeatureResult] = {}
        self._samples: dict[FeatureKey, pl.DataFrame | AssetError] = {}
        self.log = logging.getLogger("mxd.run")

    # the run
    def execute(self) -> RunResult:
        keys = self.graph.select(self.options.selectors)
        result = RunResult(
            self.run_id, "running", self.options.dry_run, self.config.name, now_utc()
        )
        self.results = {k: FeatureResult(str(k)) for k in keys}
        result.features = [self.results[k] for k in keys]
        record = RunRecord(
            self.run_id,
            self.project.config.project,
            "running",
            result.started_at,
            self.options.selectors,
            self.options.to_json(),
        )
        self._check_filter_columns(keys)  # bad input fails before the first write
        self.store.append(RUNS, record.row())
        clock = time.monotonic()
        try:
            for key in keys:
                self._feature(key)
                if self.results[key].status == "interrupted":
                    break
                if self.results[key].status == "failed" and self.options.fail_fast:
                    break
            for res in result.features:
                if res.status == "pending":
                    res.status = "skipped"
                    res.note = res.note or "not reached"
            result.status = _overall(result.features)
        except BaseException:
            result.status = "interrupted" if self._interrupted() else "failed"
            raise
        finally:
            result.seconds = time.monotonic() - clock
            record.status = result.status
            record.finished_at = now_utc()
            record.features = [f.to_json() for f in result.features]
            record.written, record.deleted = result.written, result.deleted
            self.store.append(RUNS, record.row())
        return result

    def _interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.results.values()) or self.should_stop()

    def _feature(self, key: FeatureKey) -> None:
        res = self.results[key]
        node = self.graph[key]
        # The whole upstream closure is checked, so a failure two levels up skips us too.
        failed_up = [
            u
            for u in self.graph.upstream_closure(key)
            if u in self.results and self.results[u].status == "failed"
        ]
        if failed_up:
            res.status = "skipped"
            res.note = f"upstream {sorted(failed_up)[0]} failed"
            self.listener.feature_finished(res)
            return
        asset = self.project.registry.assets.get(key)
        if asset is None:
            res.status = "skipped"
            res.note = "no asset (populated outside mxd)"
            self.listener.feature_finished(res)
            return
        clock = time.monotonic()
        try:
            self._compute(node, asset, res)
        except AssetError as err:
            res.status = "failed"
            res.error = str(err)
            self.log.debug("feature %s failed", key, exc_info=True)
        except _Stopped:
            res.status = "interrupted"
        except KeyboardInterrupt:
            res.status = "interrupted"
            raise
        finally:
            self.reader.forget(key)  # written (maybe in part): read it afresh from now on
            res.seconds = time.monotonic() - clock
            if res.status != "pending":
                self.listener.feature_finished(res)

    # one feature
    def _compute(self, node: FeatureNode, asset: AssetDefinition, res: FeatureResult) -> None:
        key = node.key
        ctx = self._context(key)
        state = self._state(node, asset, ctx)
        saved = self.checkpoints.get(str(key))
        if state is not None and saved is not None and saved[0] == state:
            res.status, res.unchanged = "up_to_date", saved[1]
            return
        samples = self._root_samples(node, asset, ctx) if node.is_root else None
        increment = resolve_increment(
            node,
            self.graph,
            self.reader,
            algorithm=self.config.hash_algorithm,
            length=self.project.config.hash_truncation_length,
            samples=samples,
            restrict=self._restriction(node),
            own=self.reader.own,
            full=self.options.full,
        )
        counts = increment.counts()
        res.new, res.stale = counts["new"], counts["stale"]
        res.orphaned, res.unchanged = counts["orphaned"], counts["unchanged"]
        # Sorted by sample key: chunks are the same in every run (and after a resume).
        todo = self._sampled(increment.to_compute(), increment.key_columns)
        if todo.height:
            todo = todo.sort(increment.key_columns)
        writer = FeatureWriter(
            self.store,
            node,
            self.project.versions,
            project=self.project.config.project,
            algorithm=self.config.hash_algorithm,
            length=self.project.config.hash_truncation_length,
            materialization_id=self.run_id,
        )
        self.listener.feature_started(str(key), todo.height)
        ctx = self._context(key, counts)
        size = self._chunk_size(asset)
        for start in range(0, todo.height, size):
            if self.should_stop():
                raise _Stopped
            chunk = todo.slice(start, size)
            # Dry runs do not call downstream assets (they may be costly): the increment's
            # rows stand in for their output, so data versions equal provenance there.
            stand_in = node.is_root or self.options.dry_run
            rows = chunk if stand_in else self._call(asset, ctx, node, chunk, increment)
            res.written += writer.write(rows)
            self.listener.rows_done(str(key), chunk.height)
        if increment.orphaned.height and not self.options.keep_orphans:
            if self.options.sample is None:
                res.deleted = writer.soft_delete(increment.orphaned)
            else:
                res.note = "orphans kept (--sample)"
        res.status = "success" if todo.height or increment.orphaned.height else "up_to_date"
        kept = increment.orphaned.height and not res.deleted
        if state is not None and not self.options.restricted and not kept:
            after = self._state(node, asset, ctx)
            if after is not None:
                stored = counts["unchanged"] + counts["new"] + counts["stale"]
                self.checkpoints.put(str(key), after, stored, self.run_id)

    def _root_samples(
        self, node: FeatureNode, asset: AssetDefinition, ctx: AssetContext
    ) -> pl.DataFrame:
        """Every current sample of a root feature, checked (asked once per run)."""
        found = self._samples.pop(node.key, None)
        if isinstance(found, AssetError):
            raise found
        if found is None:
            found = root_samples(asset, ctx)
            check_ids(found, node.spec.id_columns, asset)
        return found

    def _call(
        self,
        asset: AssetDefinition,
        ctx: AssetContext,
        node: FeatureNode,
        chunk: pl.DataFrame,
        increment: Increment,
    ) -> pl.DataFrame:
        frames = call_asset(asset, ctx, chunk)
        out = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        check_ids(out, node.spec.id_columns, asset, chunk.schema)
        return attach_provenance(out, chunk, increment.key_columns, asset)

    def _context(self, key: FeatureKey, counts: dict[str, int] | None = None) -> AssetContext:
        part = self.options.partition
        return AssetContext(
            key,
            run_id=self.run_id,
            project_dir=self.project.config.root,
            partition=None if part is None else {part[0]: part[1]},
            log=logging.getLogger(f"mxd.asset.{key}"),
            counts={k: v for k, v in (counts or {}).items() if k != "stored"},
        )

    def _chunk_size(self, asset: AssetDefinition) -> int:
        configured = self.project.config.mxd.get("chunk_size", 10_000)
        size = self.options.chunk_size or asset.chunk_size or configured
        return max(1, int(size))

    # restrictions
    def _restriction(self, node: FeatureNode) -> pl.Expr | None:
        parts: list[pl.Expr] = []
        if self.filter is not None:
            parts.append(self.filter.to_polars())
        if self.options.keys:
            parts.append(pl.col(node.spec.id_columns[0]).cast(pl.String).is_in(self.options.keys))
        if self.options.partition is not None:
            column, value = self.options.partition
            parts.append(pl.col(column).cast(pl.String) == value)
        return pl.all_horizontal(parts) if parts else None

    def _sampled(self, todo: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
        """``--sample N``: the N samples with the smallest seeded hash of their ids, so the
        same seed picks the same samples in every feature and every run."""
        n = self.options.sample
        if n is None or todo.height <= n:
            return todo
        text = pl.concat_str(
            [pl.lit(str(self.options.seed)), *(pl.col(k).cast(pl.String) for k in key)],
            separator="|",
        )
        return (
            todo.with_columns(hash_expr(text, "sha256", 16).alias(_SAMPLE_RANK))
            .sort(_SAMPLE_RANK)
            .head(n)
            .drop(_SAMPLE_RANK)
        )

    def _check_filter_columns(self, keys: Sequence[FeatureKey]) -> None:
        """Filter and partition columns must exist in every selected feature whose columns
        can be known before the run (stored tables, root samples are checked when read)."""
        wanted = set(self.filter.columns) if self.filter is not None else set()
        if self.options.partition is not None:
            wanted.add(self.options.partition[0])
        if not wanted:
            return
        for key in keys:
            known = self._known_columns(key)
            if known is None:
                continue
            missing = sorted(wanted - known)
            if missing:
                what = (
                    "partition"
                    if self.options.partition and missing[0] == (self.options.partition[0])
                    else "filter"
                )
                raise FilterError(
                    f"{what} column {missing[0]!r} is not a column of feature {key}",
                    hint=did_you_mean(missing[0], sorted(known))
                    or "select only features that have the column",
                )

    def _known_columns(self, key: FeatureKey) -> set[str] | None:
        node = self.graph[key]
        if node.is_root:
            # Restricted runs ask root assets first, so a bad column fails before any write.
            asset = self.project.registry.assets.get(key)
            if asset is None:
                frame = self.reader.own(key)
                return None if frame is None else set(frame.collect_schema().names())
            try:
                samples = self._root_samples(node, asset, self._context(key))
            except AssetError as err:
                self._samples[key] = err
                return None
            self._samples[key] = samples
            return set(samples.columns) | set(c.SYSTEM_COLUMNS)
        columns: set[str] = set(node.spec.id_columns)
        for dep in node.spec.deps:
            up = self.reader(dep.feature)
            if up is None:
                return None
            names = up.collect_schema().names()
            if dep.select is not None:
                names = [
                    n
                    for n in names
                    if n in dep.select or n in self.graph[dep.feature].spec.id_columns
                ]
            renames = dep.rename or {}
            columns |= {renames.get(n, n) for n in names}
        return columns | set(c.SYSTEM_COLUMNS)

    # checkpoints
    def _state(self, node: FeatureNode, asset: AssetDefinition, ctx: AssetContext) -> str | None:
        """What the feature's increment depends on, as one string; None when unknown."""
        if self.options.full or self.options.restricted:
            return None
        marks: dict[str, Any] = {
            "feature_version": self.project.versions.feature_version(node.key),
            "hash": [self.config.hash_algorithm, self.project.config.hash_truncation_length],
            "own": self.store.write_mark(node.key.parts),
        }
        if node.is_root:
            if asset.source_version is None:
                return None
            try:
                marks["source"] = str(asset.source_version(ctx))
            except Exception as exc:
                raise AssetError(
                    f"source_version of asset {asset.name!r} of {node.key} raised "
                    f"{type(exc).__name__}: {exc}",
                    location=str(asset.origin),
                ) from exc
        for up in node.upstream:
            source = self.reader.source(up)
            marks[str(up)] = None if source is None else [source.name, source.write_mark(up.parts)]
            if source is not None and marks[str(up)][1] is None:
                return None
        if marks["own"] is None:
            return None
        return json.dumps(marks, sort_keys=True)


def _overall(features: Sequence[FeatureResult]) -> str:
    statuses = {f.status for f in features}
    if "interrupted" in statuses:
        return "interrupted"
    if "failed" not in statuses:
        return "success"
    return "partial" if statuses & {"success", "up_to_date"} else "failed"
