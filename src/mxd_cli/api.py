"""Use cases behind the commands. The CLI is one user of these functions; scripts may be others.

Every function takes a loaded :class:`Project` and returns plain data (dicts, lists,
dataclasses) that the CLI renders as tables or JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mxd_cli.project import Project as Project  # re-exported: api.Project.load(...)


def list_features(project: Project, selectors: Sequence[str] = ()) -> dict[str, Any]:
    """Definitions of the selected features (the ``list`` JSON shape)."""
    graph, versions = project.graph, project.versions
    features = []
    for key in graph.select(selectors):
        node = graph[key]
        v = versions[key]
        features.append(
            {
                "feature": str(key),
                "feature_version": v.feature_version,
                "feature_code_version": v.feature_code_version,
                "table": key.table_name,
                "id_columns": list(node.spec.id_columns),
                "deps": [str(k) for k in node.upstream],
                "root": node.is_root,
                "tags": list(node.spec.tags),
                "description": node.spec.description,
                "has_asset": key in project.registry.assets,
                "defined_at": str(node.origin),
                "fields": [
                    {
                        "field": str(f.key),
                        "code_version": f.code_version,
                        "version": v.field_versions[f.key],
                        "deps": [str(p) for p in node.parent_fields[f.key]],
                    }
                    for f in node.spec.fields
                ],
            }
        )
    return {"project": project.config.project, "features": features}


def list_stores(project: Project) -> dict[str, Any]:
    """Configured stores, the default first."""
    config = project.config
    names = sorted(config.stores, key=lambda n: (n != config.store, n))
    return {
        "stores": [
            {
                "name": name,
                "type": config.stores[name].type,
                "default": name == config.store,
                "hash_algorithm": config.stores[name].hash_algorithm,
                "fallback_stores": list(config.stores[name].fallback_stores),
                "options": dict(config.stores[name].options),
            }
            for name in names
        ]
    }


def check(project: Project) -> dict[str, Any]:
    """Summary of a project that loaded cleanly (loading raises on every hard problem)."""
    without_asset = [str(k) for k in project.graph.order if k not in project.registry.assets]
    config = project.config
    return {
        "ok": True,
        "config": str(config.path) if config.path else None,
        "project": config.project,
        "features": len(project.graph),
        "assets": len(project.registry.assets),
        "project_version": project.versions.project_version,
        "store": config.store,
        "warnings": [
            f"feature {k} has no asset (it can be observed, not materialized)"
            for k in without_asset
        ],
    }


@contextmanager
def _opened(
    project: Project, store: str | None, *, read_only: bool
) -> Iterator[tuple[Any, list[Any]]]:
    """The named store and its fallback stores (read-only), all closed afterwards."""
    from mxd_cli.store import open_store

    config = project.config.store_config(store)
    target = open_store(config, read_only=read_only)
    fallbacks = []
    try:
        fallbacks = [
            open_store(project.config.store_config(name), read_only=True)
            for name in config.fallback_stores
        ]
        yield target, fallbacks
    finally:
        target.close()
        for fb in fallbacks:
            fb.close()


def materialize(
    project: Project,
    options: Any = None,
    *,
    store: str | None = None,
    wait: float | None = None,
    listener: Any = None,
    should_stop: Any = None,
) -> Any:
    """Run the selected features' assets on their increments; returns a ``RunResult``.

    ``options`` is a :class:`~mxd_cli.engine.materialize.RunOptions`. A real run holds the
    store's writer lock (waiting up to ``wait`` seconds, default ``ext.mxd.lock_timeout``);
    a dry run opens the store read-only and keeps every write in memory.
    """
    import logging
    from contextlib import nullcontext

    from mxd_cli.engine.filters import parse_filters
    from mxd_cli.engine.materialize import Run, RunOptions
    from mxd_cli.engine.runs import close_dead_runs
    from mxd_cli.errors import UsageError
    from mxd_cli.store.lock import WriterLock
    from mxd_cli.store.overlay import OverlayStore

    opts: RunOptions = options if options is not None else RunOptions()
    keys = project.graph.select(opts.selectors)
    restrict = parse_filters(list(opts.filters)) if opts.filters else None
    if opts.keys:
        wide = [str(k) for k in keys if len(project.graph[k].spec.id_columns) > 1]
        if wide:
            raise UsageError(
                f"--keys needs features with one id column; {wide[0]} has several",
                hint="use --filter on the id columns instead",
            )
    config = project.config.store_config(store)
    timeout = float(project.config.mxd.get("lock_timeout", 0.0) if wait is None else wait)
    with _opened(project, store, read_only=opts.dry_run) as (base, fallbacks):
        target = OverlayStore(base) if opts.dry_run else base
        lock_path = None if opts.dry_run else base.lock_path()
        lock = WriterLock(lock_path, wait=timeout, command="mxd materialize") if lock_path else None
        with lock if lock is not None else nullcontext():
            if lock is not None and lock.took_over is not None:
                dead = lock.took_over
                logging.getLogger("mxd.lock").warning(
                    "took over the store lock of a dead writer (pid %s, since %s)",
                    dead.get("pid"),
                    dead.get("started_at"),
                )
            if not opts.dry_run:
                for run_id in close_dead_runs(target, project.config.project):
                    logging.getLogger("mxd.run").warning("run %s was cut off: interrupted", run_id)
            run = Run(
                project,
                target,
                config,
                opts,
                fallbacks=fallbacks,
                restrict=restrict,
                listener=listener,
                should_stop=should_stop or (lambda: False),
            )
            return run.execute()


def runs(project: Project, *, store: str | None = None, limit: int = 20) -> dict[str, Any]:
    """The store's materialize history, newest first (read-only)."""
    from mxd_cli.engine.runs import history

    config = project.config.store_config(store)
    with _opened(project, store, read_only=True) as (target, _fallbacks):
        records = history(target, project.config.project)
    return {"store": config.name, "runs": [r.to_json() for r in records[:limit]]}


def status(
    project: Project,
    selectors: Sequence[str] = (),
    *,
    filters: Sequence[str] = (),
    store: str | None = None,
) -> dict[str, Any]:
    """Per selected feature: stored, new, stale, orphaned, unchanged and why (read-only).

    Root features are compared with what their asset returns now (root assets are called;
    they must not write anything). A root feature without an asset reports status "root".
    """
    import polars as pl

    from mxd_cli.definitions.asset import AssetContext
    from mxd_cli.engine.assets import root_samples
    from mxd_cli.engine.filters import parse_filters
    from mxd_cli.engine.increment import resolve_increment
    from mxd_cli.engine.reader import CurrentRows
    from mxd_cli.engine.status import FeatureStatus, feature_status
    from mxd_cli.errors import AssetError, FilterError

    keys = project.graph.select(selectors)
    flt = parse_filters(list(filters)) if filters else None
    config = project.config.store_config(store)
    results: dict[Any, FeatureStatus] = {}
    with _opened(project, store, read_only=True) as (target, fallbacks), target.session():
        reader = CurrentRows(target, project.graph, project.versions, fallbacks)
        for key in keys:
            node = project.graph[key]
            version = project.versions.feature_version(key)
            asset = project.registry.assets.get(key)
            if node.is_root and asset is None:
                current = reader.own(key)
                stored = 0 if current is None else current.select(pl.len()).collect().item()
                results[key] = FeatureStatus(
                    key, "root", stored=stored, causes=["root feature without an asset"]
                )
                continue
            try:
                samples = None
                if node.is_root and asset is not None:
                    ctx = AssetContext(key, run_id="status", project_dir=project.config.root)
                    samples = root_samples(asset, ctx)
                increment = resolve_increment(
                    node,
                    project.graph,
                    reader,
                    algorithm=config.hash_algorithm,
                    length=project.config.hash_truncation_length,
                    samples=samples,
                    restrict=None if flt is None else flt.to_polars(),
                    own=reader.own,
                )
            except AssetError as err:
                results[key] = FeatureStatus(key, "error", causes=[str(err)])
                continue
            except pl.exceptions.ColumnNotFoundError as exc:
                raise FilterError(
                    f"filter column not found in feature {key}: {exc}".splitlines()[0],
                    hint="select only the features that have the filter's columns",
                ) from None
            pending_up = [
                u
                for u in node.upstream
                if u in results and results[u].status in ("needs_update", "missing")
            ]
            results[key] = feature_status(
                node,
                project.graph,
                increment,
                target,
                feature_version=version,
                project=project.config.project,
                pending_upstream=pending_up,
                read=reader,
                sources=reader.source,
            )
    return {
        "store": config.name,
        "features": [results[k].to_json() for k in keys],
        "pending": any(results[k].pending for k in keys),
    }


def delete(
    project: Project,
    features: Sequence[str],
    *,
    filters: Sequence[str] = (),
    all_rows: bool = False,
    hard: bool = False,
    cascade: bool = False,
    dry_run: bool = False,
    store: str | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Delete the current rows of ``features`` that match every filter (the ``delete`` shape).

    Soft by default (tombstones: ``mxd status`` then counts the samples as new); ``hard``
    removes every physical row of the matched ids, choosing among the latest row of every
    stored id (soft-deleted and older-version ones too). Filters are checked against each
    feature's columns before anything is written; ``dry_run`` only counts. ``cascade`` also
    deletes downstream rows derived from the matched samples. Confirming a hard delete is
    the caller's job.

    Example::

        report = api.delete(project, ["shop/products"], filters=["price > 100"], dry_run=True)
        report["features"][0]["matched"]  # samples that would be deleted
    """
    from contextlib import nullcontext

    from mxd_cli.engine.deletion import (
        DeletionPlan,
        DeletionResult,
        Mode,
        execute_deletion,
        parse_feature_filters,
        plan_deletion,
    )
    from mxd_cli.errors import UsageError
    from mxd_cli.store import open_store
    from mxd_cli.store.lock import WriterLock

    if not features:
        raise UsageError(
            "name the feature(s) to delete from", hint="e.g. mxd delete demo/raw --filter 'x > 1'"
        )
    if not filters and not all_rows:
        raise UsageError(
            "no --filter given: refusing to delete every row",
            hint="add --filter SQL to choose rows, or --all to delete every current row",
        )
    if filters and all_rows:
        raise UsageError("--all deletes every current row: leave it out when using --filter")
    keys = list(dict.fromkeys(project.graph.resolve_key(f) for f in features))
    mode: Mode = "hard" if hard else "soft"
    config = project.config.store_config(store)

    def plan(on: Any, parsed: dict[Any, Any]) -> DeletionPlan:
        return plan_deletion(
            project.graph, project.versions, on, parsed, mode=mode, cascade=cascade
        )

    # Filters are checked (and a dry run planned) on a read-only store: nothing can change.
    with open_store(config, read_only=True) as reader, reader.session():
        parsed = {k: parse_feature_filters(project.graph[k], filters, reader) for k in keys}
        if dry_run:
            preview = plan(reader, parsed)
    if dry_run:
        results = [
            DeletionResult(f.feature, f.matched, 0, f.physical_rows if hard else f.matched)
            for f in preview.features
        ]
        return _deletion_report(config.name, preview, results, dry_run=True)
    with open_store(config) as target:
        lock_path = target.lock_path()
        lock = WriterLock(lock_path, wait=wait, command="mxd delete") if lock_path else None
        with lock or nullcontext(), target.session():
            chosen = plan(target, parsed)
            results = execute_deletion(chosen, target, project.versions)
    return _deletion_report(config.name, chosen, results, dry_run=False)


def _deletion_report(
    store: str, plan: Any, results: Sequence[Any], *, dry_run: bool
) -> dict[str, Any]:
    features = []
    for item, result in zip(plan.features, results, strict=True):
        features.append(
            {
                "feature": str(item.feature),
                "matched": result.matched,
                "deleted": result.deleted,
                "rows_affected": result.rows,
                "cascade_from": [str(k) for k in item.cascade_from],
                "targeted": item.targeted,
            }
        )
    return {
        "store": store,
        "dry_run": dry_run,
        "mode": plan.mode,
        "features": features,
        "matched": sum(f["matched"] for f in features),
        "deleted": sum(f["deleted"] for f in features),
    }


def observe(
    project: Project,
    selectors: Sequence[str] = (),
    *,
    store: str | None = None,
    wait: float = 5.0,
) -> dict[str, Any]:
    """Observe the selected features and record the observations (the ``observe`` shape).

    Reads like ``status`` (root assets are called to count how far roots are behind), then
    appends one row per feature to the store's observation table under the writer lock,
    waiting at most ``wait`` seconds. When another writer keeps the lock longer, the report
    is still returned, with ``recorded`` false and ``changed`` measured against the last
    recorded observation.

    Example::

        report = api.observe(project, ["shop/*"])
        [f["feature"] for f in report["features"] if f["changed"]]
    """
    from contextlib import nullcontext

    from mxd_cli.engine.observation import (
        observation_rows,
        observe_feature,
        previous_fingerprints,
    )
    from mxd_cli.engine.reader import CurrentRows
    from mxd_cli.errors import LockError
    from mxd_cli.store import OBSERVATIONS, open_store
    from mxd_cli.store.base import now_utc
    from mxd_cli.store.lock import WriterLock

    keys = project.graph.select(selectors)
    config = project.config.store_config(store)
    name = project.config.project
    with _opened(project, store, read_only=True) as (source, fallbacks), source.session():
        reader = CurrentRows(source, project.graph, project.versions, fallbacks)
        seen = [
            observe_feature(
                project.graph[key],
                project.graph,
                source,
                reader,
                reader.own,
                feature_version=project.versions.feature_version(key),
                asset=project.registry.assets.get(key),
                project_dir=project.config.root,
                algorithm=config.hash_algorithm,
                length=project.config.hash_truncation_length,
            )
            for key in keys
        ]
    at = now_utc()
    warning = None
    with open_store(config) as target:
        lock_path = target.lock_path()
        lock = WriterLock(lock_path, wait=wait, command="mxd observe") if lock_path else None
        try:
            with lock or nullcontext(), target.session():
                previous = previous_fingerprints(target, name, keys)
                observed = [o.with_previous(previous.get(o.feature)) for o in seen]
                target.append(OBSERVATIONS, observation_rows(observed, name, at))
        except LockError as err:
            previous = previous_fingerprints(target, name, keys)
            observed = [o.with_previous(previous.get(o.feature)) for o in seen]
            warning = f"observations not recorded: {err.message}"
    features = [o.to_json() for o in observed]
    return {
        "store": config.name,
        "observed_at": at.isoformat(),
        "recorded": warning is None,
        "warning": warning,
        "changed": any(f["changed"] for f in features),
        "features": features,
    }
