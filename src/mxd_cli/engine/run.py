"""A materialize run: each selected feature in topological order, only its increment.

The run records itself in ``__mxd/runs`` when it starts and ends, checks every
restriction against every selected feature before its first write, then hands each
feature to its :class:`~mxd_cli.engine.step.FeatureStep`. A failing feature fails alone:
independent features go on (unless ``fail_fast``), dependents are skipped.

Dry runs use the same code against an overlay of the store (writes land in the engine's
temporary tables), so they report the exact counts a real run would, downstream features
included, and write nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from sqlglot import exp

from mxd_cli.config import StoreConfig
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.plan import HashSettings
from mxd_cli.engine.restrictions import Restrictions, RestrictionSpec, Unrelated, types_of
from mxd_cli.engine.results import (
    FeatureResult,
    Listener,
    Quiet,
    RunOptions,
    RunResult,
    new_run_id,
    overall_status,
)
from mxd_cli.engine.runs import Checkpoints, RunRecord
from mxd_cli.engine.session import Session
from mxd_cli.engine.step import FeatureStep, RunContext, Stopped
from mxd_cli.errors import AssetError, FilterError, MassDeleteError
from mxd_cli.project import Project
from mxd_cli.store.base import RUNS, MetadataStore, now_utc


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
        listener: Listener | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        run_id: str | None = None,
    ) -> None:
        self.project = project
        self.graph = project.graph
        self.store = store
        self.options = options
        hashing = HashSettings(store_config.hash_algorithm, project.config.hash_truncation_length)
        session = Session(
            project.graph,
            project.versions,
            store,
            fallbacks,
            hashing=hashing,
            project=project.config.project,
        )
        sample = None if options.sample is None else (options.sample, options.seed)
        spec = RestrictionSpec(options.filters, options.keys, options.partition, sample)
        self.context = RunContext(
            project=project,
            session=session,
            config=store_config,
            options=options,
            run_id=run_id or new_run_id(),
            checkpoints=Checkpoints(store, project.config.project, fallbacks),
            listener=listener or Quiet(),
            should_stop=should_stop,
            restrictions=(Restrictions(spec, project.graph, session.locate) if spec else None),
        )
        self.results: dict[FeatureKey, FeatureResult] = {}
        self.log = logging.getLogger("mxd.run")

    @property
    def run_id(self) -> str:
        return self.context.run_id

    def execute(self) -> RunResult:
        keys = self.graph.select(self.options.selectors)
        result = RunResult(
            self.run_id, "running", self.options.dry_run, self.context.config.name, now_utc()
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
        self.precheck(keys)  # bad input fails before the first write
        self.store.append(RUNS, record.row())
        clock = time.monotonic()
        try:
            for key in keys:
                self.feature(key)
                if self.results[key].status == "interrupted":
                    break
                if self.results[key].status == "failed" and self.options.fail_fast:
                    break
            for res in result.features:
                if res.status == "pending":
                    res.status = "skipped"
                    res.note = res.note or "not reached"
            result.status = overall_status(result.features)
        except BaseException:
            result.status = "interrupted" if self.interrupted() else "failed"
            raise
        finally:
            result.seconds = time.monotonic() - clock
            record.status = result.status
            record.finished_at = now_utc()
            record.features = [f.to_json() for f in result.features]
            record.written, record.deleted = result.written, result.deleted
            self.store.append(RUNS, record.row())
        return result

    def interrupted(self) -> bool:
        return (
            any(r.status == "interrupted" for r in self.results.values())
            or self.context.should_stop()
        )

    def feature(self, key: FeatureKey) -> None:
        res = self.results[key]
        listener = self.context.listener
        # The whole upstream closure is checked, so a failure two levels up skips us too.
        failed_up = [
            u
            for u in self.graph.upstream_closure(key)
            if u in self.results and self.results[u].status == "failed"
        ]
        if failed_up:
            res.status = "skipped"
            res.note = f"upstream {sorted(failed_up)[0]} failed"
            listener.feature_finished(res)
            return
        if key not in self.project.registry.assets:
            res.status = "skipped"
            res.note = "no asset (populated outside mxd)"
            listener.feature_finished(res)
            return
        clock = time.monotonic()
        try:
            FeatureStep(self.context, key).execute(res)
        except Unrelated as err:
            res.status = "skipped"
            res.note = err.message
        except (AssetError, MassDeleteError) as err:
            res.status = "failed"
            res.error = str(err) + (f" (hint: {err.hint})" if err.hint else "")
            self.log.debug("feature %s failed", key, exc_info=True)
        except Stopped:
            res.status = "interrupted"
        except KeyboardInterrupt:
            res.status = "interrupted"
            raise
        finally:
            self.context.session.forget(key)  # written (maybe in part): read it afresh
            res.metadata = dict(self.context.metadata.get(key, {}))  # ctx.add_metadata
            res.seconds = time.monotonic() - clock
            if res.status != "pending":
                listener.feature_finished(res)

    def precheck(self, keys: Sequence[FeatureKey]) -> None:
        """Bad input fails before the run writes anything: every dep's filters and selects
        are planned against the upstream tables that exist, and every restriction is
        compiled against every selected feature whose columns are known — stored tables,
        and root samples (a restricted run asks its root assets first)."""
        from mxd_cli.engine.increment import _expected

        session = self.context.session
        for key in keys:
            node = self.graph[key]
            if not node.is_root and all(session.locate(d.feature) for d in node.spec.deps):
                _expected(session, node, None, None)
        restrictions = self.context.restrictions
        if restrictions is None:
            return
        check = Restrictions(restrictions.spec, self.graph, restrictions.locate)
        selected = set(keys)
        wanted = selected | {u for k in keys for u in self.graph.upstream_closure(k)}
        outputs: dict[FeatureKey, dict[str, object]] = {}
        unrelated: list[Unrelated] = []
        related = 0
        for key in (k for k in self.graph.order if k in wanted):
            node = self.graph[key]
            stored = session.locate(key)
            types = self._known_types(key, outputs, stage=key in selected)
            if types is None:
                continue
            outputs[key] = types
            version = session.feature_version(key)
            if key in selected:
                rows = self._staged_rows(key)
                try:
                    check.compile(node, types, stored, version, rows)
                    related += 1
                except Unrelated as err:
                    unrelated.append(err)
                except FilterError:
                    if types:
                        raise
                continue
            # An upstream outside the selection keeps its rows: restrict it as stored, so
            # selected features can follow the restriction through it.
            for target in (check, restrictions):
                with contextlib.suppress(FilterError):
                    target.compile(node, types, stored, version)
        if unrelated and not related:
            raise unrelated[0]  # nothing selected relates: the restriction is a mistake

    def _staged_rows(self, key: FeatureKey) -> exp.Expr | None:
        staged = self.context.staged.get(key)
        return None if staged is None or isinstance(staged, AssetError) else staged.source.ref

    def _known_types(
        self, key: FeatureKey, outputs: dict[FeatureKey, dict[str, object]], *, stage: bool
    ) -> dict[str, object] | None:
        """Column types of ``key``'s expected rows, as far as they can be known now."""
        node = self.graph[key]
        session = self.context.session
        asset = self.project.registry.assets.get(key)
        if node.is_root:
            if asset is not None and stage:
                try:
                    staged = self.context.root_samples(node, asset)
                except AssetError as err:
                    self.context.staged[key] = err
                    return None
                self.context.staged[key] = staged
                return types_of(staged.source.schema)
            source = session.locate(key)
            return None if source is None else types_of(source.schema)
        types: dict[str, object] = {}
        for dep in node.spec.deps:
            source = session.locate(dep.feature)
            known = types_of(source.schema) if source is not None else outputs.get(dep.feature)
            if known is None:
                return {}
            rename = dict(dep.rename or {})
            types |= {rename.get(n, n): t for n, t in known.items()}
        return types


__all__ = ["Run", "RunOptions", "RunResult"]
