"""The per-feature step of a run: resolve → write chunks → orphans → checkpoint.

``FeatureStep(context, key).execute(result)`` is what ``mxd materialize`` does for each
selected feature, and what an orchestrator adapter (Dagster) or a test calls for one:

1. Up to date without reading a row when the feature's code, its upstream tables, its
   own table and its root source token are exactly as at its checkpoint.
2. Resolve the increment in the store's engine — only the samples changed since the
   checkpoint, when there is one.
3. Root features: the asset's samples were staged and hashed in the engine; the new and
   stale ones are written from there in one commit. Downstream features: the rows to
   compute stream out of the engine in chunks (sorted by sample key, so chunks are the
   same in every run and after a resume), the asset computes each, its output is checked
   and stamped, and outputs are committed in groups (progress moves when they are durable).
4. Orphaned samples are soft-deleted in the engine (tombstone copies).
5. A checkpoint records the state the feature was computed from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlglot import exp

from mxd_cli.config import StoreConfig
from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.assets import call_asset
from mxd_cli.engine.increment import Baseline, Increment, resolve
from mxd_cli.engine.output import attach_provenance, check_columns, check_ids
from mxd_cli.engine.plan import CHANGE, expands, sample_key
from mxd_cli.engine.remote import ChunkFunction
from mxd_cli.engine.restrictions import FeatureRestriction, Restrictions, types_of
from mxd_cli.engine.results import FeatureResult, Listener, RunOptions
from mxd_cli.engine.roots import StagedSamples, stage_root_samples
from mxd_cli.engine.runs import Checkpoints
from mxd_cli.engine.session import Session
from mxd_cli.engine.sql import col, in_keys, lit
from mxd_cli.engine.writer import CommitGroup, FeatureWriter
from mxd_cli.errors import AssetError, MassDeleteError
from mxd_cli.graph import FeatureNode
from mxd_cli.project import Project
from mxd_cli.store import columns as c
from mxd_cli.store.base import now_utc


class Stopped(Exception):
    """A stop was requested between two chunks."""


@dataclass
class RunContext:
    """What every step of one run shares."""

    project: Project
    session: Session
    config: StoreConfig
    options: RunOptions
    run_id: str
    checkpoints: Checkpoints
    listener: Listener
    should_stop: Callable[[], bool] = lambda: False
    restrictions: Restrictions | None = None
    metadata: dict[FeatureKey, dict[str, Any]] = field(default_factory=dict)
    staged: dict[FeatureKey, StagedSamples | AssetError] = field(default_factory=dict)
    snapshot_done: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("mxd.run"))

    @property
    def store(self) -> Any:
        return self.session.store

    def context(self, key: FeatureKey, counts: dict[str, int] | None = None) -> AssetContext:
        part = self.options.partition
        return AssetContext(
            key,
            run_id=self.run_id,
            project_dir=self.project.config.root,
            partition=None if part is None else {part[0]: part[1]},
            log=logging.getLogger(f"mxd.asset.{key}"),
            counts={k: v for k, v in (counts or {}).items() if k != "stored"},
            metadata=self.metadata.setdefault(key, {}),
            reader=self.read_feature,
        )

    def read_feature(
        self, feature: Any, columns: Sequence[str] | None, filter: str | None
    ) -> pl.LazyFrame:
        """``ctx.read``: a feature's current rows through this run's store and fallbacks."""
        from mxd_cli.definitions.spec import feature_key_of
        from mxd_cli.errors import FilterError, UsageError

        key = feature_key_of(feature)
        try:
            query = self.session.current(key, columns, filter, side=True)
        except (UsageError, FilterError) as err:
            raise AssetError(f"ctx.read({key}): {err.message}", hint=err.hint) from err
        if query is None:
            return pl.LazyFrame()
        return self.session.engine.side_frame(query).lazy()

    def chunk_size(self, asset: AssetDefinition) -> int:
        configured = self.project.config.mxd.get("chunk_size", 10_000)
        size = self.options.chunk_size or asset.chunk_size or configured
        return max(1, int(size))

    def root_samples(self, node: FeatureNode, asset: AssetDefinition) -> StagedSamples:
        """Every current sample of a root feature, staged (asked once per run)."""
        found = self.staged.pop(node.key, None)
        if isinstance(found, AssetError):
            raise found
        if found is None:
            found = stage_root_samples(self.session, node, asset, self.context(node.key))
        return found


class FeatureStep:
    """One feature of a run (see the module docstring)."""

    def __init__(self, run: RunContext, key: FeatureKey) -> None:
        self.run = run
        self.key = key
        self.node = run.project.graph[key]
        asset = run.project.registry.assets.get(key)
        if asset is None:
            raise AssetError(f"{key} has no asset")
        self.asset = asset

    # ---- the step ------------------------------------------------------------------------
    def execute(self, res: FeatureResult) -> None:
        run, node, asset = self.run, self.node, self.asset
        options = run.options
        state = self.state()
        served = run.session.served_by(self.key)
        if served is not None:
            res.source, res.note = served.name, f"served by fallback store {served.name!r}"
        held = run.checkpoints.holds(str(self.key), state)
        if held is not None:
            res.status, res.unchanged = "up_to_date", held
            return
        staged = run.root_samples(node, asset) if node.is_root else None
        saved = run.checkpoints.get(str(self.key))
        baseline = baseline_of(saved, state) if state is not None else None

        def resolved() -> Increment:
            return resolve(
                run.session,
                self.key,
                samples=None if staged is None else staged.source,
                restrict=self.restriction(staged),
                full=options.full,
                baseline=baseline,
            )

        self._resolve: Callable[[], Increment] = resolved
        increment = self._resolve()
        counts = increment.counts
        res.new, res.stale = counts["new"], counts["stale"]
        res.orphaned, res.unchanged = counts["orphaned"], counts["unchanged"]
        self.guard_mass_delete(counts)
        if served is not None and increment.pending:
            # The branch changes a feature its fallback serves: it takes the fallback's
            # rows first (Session.adopt), then changes them like a feature it always held.
            res.adopted = run.session.adopt(self.key)
            res.note = f"took {res.adopted} rows from fallback store {served.name!r}"
            increment = self._resolve()
            counts = increment.counts  # (the same, now against the branch's own rows)
            res.new, res.stale = counts["new"], counts["stale"]
            res.orphaned, res.unchanged = counts["orphaned"], counts["unchanged"]
        writer = FeatureWriter(
            run.store,
            node,
            run.project.versions,
            project=run.project.config.project,
            algorithm=run.session.hashing.algorithm,
            length=run.session.hashing.length,
            materialization_id=run.run_id,
            graph=run.project.graph,
        )
        todo = increment.to_write
        run.listener.feature_started(str(self.key), todo)
        if todo:
            writer.record_snapshot()  # (before any stream opens on the engine)
            if node.is_root or (options.dry_run and not expands(node)):
                self.write_roots(increment, writer, res)
            else:
                self.write_chunks(increment, writer, res)
        if counts["orphaned"] and not options.keep_orphans:
            gone = increment.compare.orphans()
            if gone is not None:
                own = run.session.locate(self.key)
                columns = [] if own is None else list(own.schema.names)
                tombstones = writer.soft_delete_query(gone, columns)
                # (An expansion tombstones every child of each orphaned sample.)
                res.deleted = counts["orphaned"] if tombstones and expands(node) else tombstones
        run.session.forget(self.key)
        res.status = "success" if todo or counts["orphaned"] else "up_to_date"
        kept = counts["orphaned"] and not res.deleted
        if state is not None and not options.restricted and not kept:
            after = self.state()
            if after is not None:
                stored = counts["unchanged"] + counts["new"] + counts["stale"]
                run.checkpoints.put(str(self.key), after, stored, run.run_id)

    # ---- writing -------------------------------------------------------------------------
    def write_roots(self, increment: Increment, writer: FeatureWriter, res: FeatureResult) -> None:
        """New and stale root samples, written from the stage in one commit (and, in dry
        runs, downstream rows too: the increment's rows stand in for the asset's output)."""
        query = self.to_compute(increment)
        if query is None:
            return
        staged = increment.columns
        own = self.run.session.locate(self.key)
        if own is not None and self.node.is_root:
            writer.check_types(
                self.run.session.engine.arrow(
                    exp.select("*")
                    .from_(query.subquery("__mxd_t", copy=False))
                    .limit(0, copy=False)
                ).schema,
                self.asset,
            )
        if self.run.should_stop():
            raise Stopped
        written = writer.write_query(query, [n for n in staged if n != CHANGE])
        res.written += written  # (one row per sample: roots, and 1:1 and N:1 dry runs)
        res.rows += written
        self.run.listener.rows_done(str(self.key), written)

    def write_groups(self, increment: Increment, writer: FeatureWriter, res: FeatureResult) -> None:
        """Aggregation (N:1) features: the asset gets, per chunk of groups, every current
        upstream row of each group with its columns (a group is never split), and returns
        one row per group."""
        run = self.run
        engine = run.session.engine
        size = run.chunk_size(self.asset)
        ctx = run.context(self.key, increment.counts)
        query = self.to_compute(increment)
        if query is None:
            return
        groups = engine.frame(query).drop(CHANGE)  # one row per group: small beside members
        group = self.commit_group(writer, res)
        for start in range(0, groups.height, size):
            if run.should_stop():
                group.flush()
                raise Stopped
            chunk = groups.slice(start, size)
            self.compute(ctx, chunk, increment, writer, group, given=self.members(increment, chunk))
            if group.due():
                group.flush()
        group.flush()

    def members(self, increment: Increment, chunk: pl.DataFrame) -> pl.DataFrame:
        """The upstream rows of the chunk's groups, sorted by their ids, with the chunk's
        other columns (from non-aggregation deps) joined on."""
        engine = self.run.session.engine
        frames = []
        for i, members in increment.members.items():
            on = list(self.node.spec.deps[i].lineage.on or ())
            keys = engine.register(chunk.select(on).unique())
            try:
                picked = (
                    exp.select("*")
                    .from_(members.subquery("__mxd_members"))
                    .where(in_keys(on, keys))
                    .order_by(*(col(n) for n in members.named_selects))
                )
                frames.append(engine.frame(picked))
            finally:
                engine.unregister(keys)
        rows = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        extra = [
            n
            for n in chunk.columns
            if n not in rows.columns and not n.startswith(("metaxy_", "__mxd"))
        ]
        key = list(increment.key_columns)
        if extra:
            rows = rows.join(chunk.select(*key, *extra), on=key, how="left")
        return rows

    def commit_group(self, writer: FeatureWriter, res: FeatureResult) -> CommitGroup:
        """Asset outputs committed together every ``commit_interval`` seconds; progress and
        ``written`` move when a group is durable."""

        def committed(rows_in: int, samples: int, written: int) -> None:
            res.written += samples
            res.rows += written
            self.run.listener.rows_done(str(self.key), rows_in)

        interval = float(self.run.project.config.mxd.get("commit_interval", 0.5))
        return CommitGroup(writer.write, interval=interval, committed=committed)

    def compute(
        self,
        ctx: AssetContext,
        chunk: pl.DataFrame,
        increment: Increment,
        writer: FeatureWriter,
        group: CommitGroup,
        *,
        given: pl.DataFrame | None = None,
    ) -> None:
        """The asset's output for one chunk, checked and added to ``group``; on an asset
        error the chunks before it are committed first, then the error goes up."""
        try:
            rows = self.call(ctx, chunk, increment, given=given)
            writer.check_types(rows, self.asset)
        except AssetError:
            group.flush()
            raise
        group.add(rows, chunk.height, self.samples_in(rows, increment))

    def write_chunks(self, increment: Increment, writer: FeatureWriter, res: FeatureResult) -> None:
        """Downstream rows: chunks to the asset, outputs committed in groups."""
        run = self.run
        if increment.members:
            self.write_groups(increment, writer, res)
            return
        if self.asset.executor == "spark" and run.store.maps_chunks() and not run.options.dry_run:
            self.write_on_executors(increment, writer, res)
            return
        size = run.chunk_size(self.asset)
        ctx = run.context(self.key, increment.counts)
        skey = list(increment.key_columns)
        last: list[tuple[object, ...]] = []
        group = self.commit_group(writer, res)
        after: Sequence[object] | None = None
        while True:
            restarted = False
            query = self.to_compute(increment, after=after)
            if query is None:
                break
            if run.options.dry_run:
                # (Dry-run writes go to the engine's memory: they cannot run beside a
                # stream of it, so the rows are fetched first.)
                frame = run.session.engine.arrow(query)
                stream = iter(frame.to_batches(max_chunksize=size))
            else:
                stream = run.session.engine.batches(query, size)
            try:
                for batch in stream:
                    if run.should_stop():
                        group.flush()
                        raise Stopped
                    chunk = pl.from_arrow(batch)
                    assert isinstance(chunk, pl.DataFrame)
                    chunk = _without(chunk, CHANGE)
                    self.compute(ctx, chunk, increment, writer, group)
                    last[:] = [tuple(chunk[k][-1] for k in skey)]
                    if group.due():
                        group.flush()
                        if run.store.yield_to_readers():
                            # The engine was reopened for a reader (its temporary tables
                            # went with it): resolve again, resume behind what is done.
                            run.session.rebind()
                            increment = self._resolve()
                            after = last[0]
                            restarted = True
                            break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:  # (an open stream would block the engine)
                    close()
            if not restarted:
                break
        group.flush()

    def write_on_executors(
        self, increment: Increment, writer: FeatureWriter, res: FeatureResult
    ) -> None:
        """Chunks computed where the store's engine runs (``executor="spark"``): the first
        here, which fixes the output's columns, then the rest on the executors, one commit
        per job of a few chunks."""
        run = self.run
        size = run.chunk_size(self.asset)
        ctx = run.context(self.key, increment.counts)
        query = self.to_compute(increment)
        if query is None:
            return
        # (the first rows in sample-key order; the executors' ranges number the rest)
        first = run.session.engine.arrow(query.limit(size))
        if first.num_rows == 0:
            return
        chunk = pl.from_arrow(first)
        assert isinstance(chunk, pl.DataFrame)
        chunk = chunk.drop(CHANGE)
        rows = self.call(ctx, chunk, increment)
        writer.check_types(rows, self.asset)
        stamping = writer.stamping(now_utc())
        schema = stamping(rows).to_arrow().schema
        group = self.commit_group(writer, res)
        group.add(rows, chunk.height, self.samples_in(rows, increment))
        group.flush()
        rest = self.to_compute(increment, after=chunk.select(increment.key_columns).row(-1))
        if rest is None:
            return
        function = ChunkFunction(
            self.asset,
            dataclasses.replace(ctx, reader=None),  # (ctx.read needs the driver's store)
            tuple(self.node.spec.id_columns),
            tuple(increment.key_columns),
            stamping,
            schema,
            size,
        )
        expansion = expands(self.node)
        for rows_in, written in run.store.append_mapped(
            writer.table, rest, function, schema, job_rows=size * 4
        ):
            res.rows += written
            if not expansion:
                res.written += written
            run.listener.rows_done(str(self.key), rows_in)
            if run.should_stop():
                raise Stopped
        if expansion:
            # (The executors' outputs are not seen here: their samples are counted after.)
            run.session.forget(self.key)
            res.written = self.samples_written(increment.key_columns)

    def samples_in(self, rows: pl.DataFrame, increment: Increment) -> int:
        """Samples an asset's output holds: one per row, or an expansion's parents."""
        if not expands(self.node):
            return rows.height
        return rows.select(increment.key_columns).n_unique() if rows.height else 0

    def samples_written(self, key: Sequence[str]) -> int:
        """Samples of this run's rows in the feature's table (``key``: the sample key)."""
        own = self.run.session.locate(self.key)
        if own is None:
            return 0
        written = (
            exp.select(exp.Star())
            .from_(own.ref, copy=False)
            .where(col(c.MATERIALIZATION_ID).eq(lit(self.run.run_id)), copy=False)
        )
        return self.run.session.engine.count(written, distinct=key)

    def to_compute(
        self, increment: Increment, after: Sequence[object] | None = None
    ) -> exp.Select | None:
        return increment.compare.to_compute(after)

    def call(
        self,
        ctx: AssetContext,
        chunk: pl.DataFrame,
        increment: Increment,
        *,
        given: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """The asset's output for ``chunk`` (the samples, with their provenance), called on
        ``given`` (what it computes from: the chunk itself, or an aggregation's members)."""
        frames = call_asset(self.asset, ctx, chunk if given is None else given)
        for frame in frames:
            check_columns(frame, self.asset)
        out = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        check_ids(out, self.node.spec.id_columns, self.asset, chunk.schema)
        return attach_provenance(out, chunk, increment.key_columns, self.asset)

    # ---- checks --------------------------------------------------------------------------
    def restriction(self, staged: StagedSamples | None) -> FeatureRestriction | None:
        run = self.run
        if run.restrictions is None:
            return None
        session = run.session
        rows = None
        if staged is not None:
            types = types_of(staged.source.schema)
            rows = staged.source.ref
        else:
            from mxd_cli.engine.increment import _expected

            plan = _expected(session, self.node, None, None)
            if plan is None:
                types = {}
            else:
                schema = session.engine.arrow(
                    exp.select("*")
                    .from_(plan.query.subquery("__mxd_t", copy=False))
                    .limit(0, copy=False)
                ).schema
                types = types_of(schema)
        return run.restrictions.compile(
            self.node,
            types,
            session.locate(self.key),
            session.feature_version(self.key),
            rows,
        )

    def guard_mass_delete(self, counts: dict[str, int]) -> None:
        """Refuse, before anything of the feature is written, a run that would soft-delete
        more than the allowed share of its stored samples (an empty or truncated export
        upstream must not wipe a feature and everything below it)."""
        orphans, stored = counts["orphaned"], counts["stored"]
        opts = self.run.options
        if not orphans or opts.keep_orphans or opts.allow_mass_delete or opts.sample is not None:
            return
        limit = opts.max_orphan_fraction
        if limit is None:
            limit = float(self.run.project.config.mxd.get("max_orphan_fraction", 0.5))
        if stored and orphans / stored > limit:
            source = "its asset returned" if self.node.is_root else "its upstreams produce"
            raise MassDeleteError(
                f"{self.key}: the run would soft-delete {orphans} of its {stored} stored "
                f"samples ({orphans / stored:.0%}, more than {limit:.0%}): {source} only "
                f"{stored - orphans + counts['new']} now",
                hint="check the source; pass --allow-mass-delete (or --max-orphan-fraction) "
                "if this is meant, or --keep-orphans to keep them",
            )

    # ---- checkpoints ---------------------------------------------------------------------
    def state(self) -> str | None:
        """What the feature's increment depends on, as one string; None when unknown."""
        run = self.run
        if run.options.full or run.options.restricted:
            return None
        return checkpoint_state(run.session, self.node, self.asset, run.context(self.key))


def checkpoint_state(
    session: Session, node: FeatureNode, asset: AssetDefinition | None, ctx: AssetContext
) -> str | None:
    """What a feature's increment depends on — its feature version, the hash settings, the
    write marks of its own and its upstreams' tables, a root's source token — as one
    string; None when one of them cannot be known cheaply."""
    store = session.store
    marks: dict[str, Any] = {
        "feature_version": session.feature_version(node.key),
        "hash": [session.hashing.algorithm, session.hashing.length],
        "own": store.write_mark(node.key.parts),
    }
    if node.is_root:
        if asset is None or asset.source_version is None:
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
        holder = session.holder(up)
        marks[str(up)] = None if holder is None else [holder.name, holder.write_mark(up.parts)]
        if holder is not None and marks[str(up)][1] is None:
            return None
    served = session.served_by(node.key)
    if served is not None:
        marks["served"] = [served.name, served.write_mark(node.key.parts)]
        if marks["served"][1] is None:
            return None
    if marks["own"] is None:
        return None
    return json.dumps(marks, sort_keys=True)


def _without(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """``frame`` without one column (``drop`` plans a query: ~0.15 ms a chunk)."""
    return pl.DataFrame([s for s in frame.get_columns() if s.name != name])


def baseline_of(saved: tuple[str, int] | None, state: str) -> Baseline | None:
    """The checkpoint a downstream feature may resolve from: same code and hashing."""
    if saved is None:
        return None
    try:
        then, now = json.loads(saved[0]), json.loads(state)
    except ValueError:
        return None
    if any(then.get(k) != now.get(k) for k in ("feature_version", "hash")):
        return None
    if not isinstance(then.get("own"), str) or "served" in then:
        return None  # (a served feature's rows moved in its fallback: resolved in full)
    upstream = {}
    for name, mark in then.items():
        if name in ("feature_version", "hash", "own", "source"):
            continue
        if not (isinstance(mark, list) and len(mark) == 2 and isinstance(mark[1], str)):
            return None
        upstream[FeatureKey.parse(name)] = (str(mark[0]), mark[1])
    return Baseline(then["own"], upstream, int(saved[1]))


__all__ = ["FeatureStep", "RunContext", "Stopped", "baseline_of", "checkpoint_state", "sample_key"]
