"""Use cases behind the commands. The CLI is one user of these functions; scripts may be others.

Every function takes a loaded :class:`Project` and returns plain data (dicts, lists,
dataclasses) that the CLI renders as tables or JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mxd_cli.project import Project as Project  # re-exported: api.Project.load(...)

if TYPE_CHECKING:
    from mxd_cli.definitions.keys import FeatureKey


def fields_of(project: Project, key: FeatureKey) -> list[dict[str, Any]]:
    """A feature's fields: code version, field version and upstream fields of each."""
    node, versions = project.graph[key], project.versions[key]
    return [
        {
            "field": str(f.key),
            "code_version": f.code_version,
            "version": versions.field_versions[f.key],
            "deps": [str(p) for p in node.parent_fields[f.key]],
        }
        for f in node.spec.fields
    ]


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
                "fields": fields_of(project, key),
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
            *(
                f"feature {k} has no asset (it can be observed, not materialized)"
                for k in without_asset
            ),
            *_metaxy_caveats(project),
            *(w for name in config.stores for w in config.stores[name].warnings),
        ],
    }


def _metaxy_caveats(project: Project) -> list[str]:
    """Definitions where Metaxy's answer is not reproducible, so mxd's differs."""
    found = []
    for key in project.graph.order:
        for dep in project.graph[key].spec.deps:
            ids = project.graph[dep.feature].spec.id_columns
            if dep.lineage.kind == "N:1" and dep.select is not None:
                renamed = {(dep.rename or {}).get(i, i) for i in ids}
                if not renamed <= set(dep.select):
                    found.append(
                        f"feature {key}: its aggregation over {dep.feature} selects without the "
                        f"upstream ids ({', '.join(sorted(ids))}); Metaxy then orders each group "
                        "by physical row order (not reproducible), mxd by the ids, so the two "
                        "tools disagree on its provenance"
                    )
    return found


def _warn_about(config: Any) -> None:
    import logging

    for warning in config.warnings:
        logging.getLogger("mxd.config").warning(warning)


@contextmanager
def _opened(
    project: Project, store: str | None, *, read_only: bool
) -> Iterator[tuple[Any, list[Any]]]:
    """The named store and its fallback stores (read-only), all closed afterwards."""
    from mxd_cli.store import open_store

    config = project.config.store_config(store)
    _warn_about(config)
    with open_store(config, read_only=read_only) as target, _fallbacks(project, config) as found:
        yield target, found


@contextmanager
def _fallbacks(project: Project, config: Any) -> Iterator[list[Any]]:
    """The fallback stores of ``config``, opened read-only in the order a feature is looked
    for in them: each fallback, then its own fallbacks (as Metaxy reads a chain), once each."""
    from mxd_cli.store import open_store

    names: list[str] = []

    def chain(of: Any) -> None:
        for name in of.fallback_stores:
            if name != config.name and name not in names:
                names.append(name)
                chain(project.config.store_config(name))

    chain(config)
    opened: list[Any] = []
    try:
        for name in names:
            opened.append(open_store(project.config.store_config(name), read_only=True))
        yield opened
    finally:
        for store in opened:
            store.close()


@contextmanager
def _writer(store: Any, command: str, wait: float) -> Iterator[None]:
    """Hold ``store``'s writer lock (when the backend has one) while the block writes; every
    write first checks that the lock is still ours."""
    import logging

    from mxd_cli.store.lock import WriterLock

    path = store.lock_path()
    if path is None:
        yield
        return
    with WriterLock(path, wait=wait, command=command) as lock:
        if lock.took_over is not None:
            dead = lock.took_over
            if dead.get("unreadable"):
                logging.getLogger("mxd.lock").warning(
                    "the lock file %s could not be read and no process held it: taken over",
                    path,
                )
            else:
                logging.getLogger("mxd.lock").warning(
                    "took over the store lock of a dead writer (pid %s, since %s)",
                    dead.get("pid"),
                    dead.get("started_at"),
                )
        store.before_write = lock.check
        try:
            yield
        finally:
            store.before_write = None


def _session(project: Project, target: Any, fallbacks: Sequence[Any], config: Any) -> Any:
    from mxd_cli.engine.plan import HashSettings
    from mxd_cli.engine.session import Session

    return Session(
        project.graph,
        project.versions,
        target,
        fallbacks,
        hashing=HashSettings(config.hash_algorithm, project.config.hash_truncation_length),
        project=project.config.project,
    )


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

    ``options`` is a :class:`~mxd_cli.engine.results.RunOptions`. A real run holds the
    store's writer lock (waiting up to ``wait`` seconds, default ``ext.mxd.lock_timeout``);
    a dry run opens the store read-only and keeps every write in the engine's memory.
    """
    import logging
    from contextlib import nullcontext

    from mxd_cli.engine.results import RunOptions
    from mxd_cli.engine.run import Run
    from mxd_cli.engine.runs import close_dead_runs
    from mxd_cli.store.overlay import OverlayStore

    opts: RunOptions = options if options is not None else RunOptions()
    project.graph.select(opts.selectors)  # unknown selectors fail before anything opens
    if opts.filters:
        from mxd_cli.engine.filters import parse_filters

        parse_filters(list(opts.filters))  # syntax first: exit 2 before opening anything
    config = project.config.store_config(store)
    timeout = float(project.config.mxd.get("lock_timeout", 0.0) if wait is None else wait)
    with _opened(project, store, read_only=opts.dry_run) as (base, fallbacks):
        target = OverlayStore(base) if opts.dry_run else base
        locked = nullcontext() if opts.dry_run else _writer(base, "mxd materialize", timeout)
        with locked:
            if not opts.dry_run:
                for run_id in close_dead_runs(target, project.config.project):
                    logging.getLogger("mxd.run").warning("run %s was cut off: interrupted", run_id)
            run = Run(
                project,
                target,
                config,
                opts,
                fallbacks=fallbacks,
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

    Root features are compared with what their asset returns now (root assets are called,
    unless their ``source_version`` says nothing changed; they must not write anything).
    A root feature without an asset reports status "root"; a feature a ``--filter`` cannot
    relate to (neither its columns nor through its upstreams) "skipped". Features whose checkpoint
    holds are up to date without reading a row; features whose upstreams moved are
    resolved on the samples touched since.
    """
    from mxd_cli.engine.restrictions import Restrictions, RestrictionSpec, Unrelated
    from mxd_cli.engine.runs import Checkpoints
    from mxd_cli.engine.status import FeatureStatus, assess, feature_status, stored_rows_of
    from mxd_cli.errors import AssetError

    keys = project.graph.select(selectors)
    if filters:
        from mxd_cli.engine.filters import parse_filters

        parse_filters(list(filters))
    config = project.config.store_config(store)
    results: dict[Any, FeatureStatus] = {}
    unrelated: list[Unrelated] = []
    spec = RestrictionSpec(tuple(filters))
    with _opened(project, store, read_only=True) as (target, fallbacks):
        session = _session(project, target, fallbacks, config)
        checkpoints = Checkpoints(target, project.config.project, fallbacks)
        restrictions = Restrictions(spec, project.graph, session.locate) if spec else None
        if restrictions is not None:
            _restrict_upstreams(project, session, restrictions, keys)
        for key in keys:
            node = project.graph[key]
            asset = project.registry.assets.get(key)
            if node.is_root and asset is None:
                own = session.locate(key)
                stored = 0
                if own is not None:
                    from mxd_cli.engine.observation import content_of

                    stored = content_of(session, node).rows
                results[key] = FeatureStatus(
                    key,
                    "root",
                    stored=stored,
                    rows=stored,
                    causes=["root feature without an asset"],
                )
                continue
            try:
                found = assess(
                    session,
                    node,
                    asset,
                    checkpoints,
                    project_dir=project.config.root,
                    restrictions=restrictions,
                )
            except AssetError as err:
                results[key] = FeatureStatus(key, "error", causes=[str(err)])
                continue
            except Unrelated as err:
                unrelated.append(err)
                results[key] = FeatureStatus(key, "skipped", causes=[err.message])
                continue
            pending_up = [
                u
                for u in node.upstream
                if u in results and results[u].status in ("needs_update", "missing")
            ]
            results[key] = feature_status(
                session,
                node,
                found.counts | {"rows": stored_rows_of(session, node, found)},
                found.increment,
                pending_upstream=pending_up,
                restricted=restrictions is not None,
            )
        for key in keys:
            result = results[key]
            holder = session.holder(key)
            result.source = None if holder is None else str(holder.name)
            served = session.served_by(key)
            if served is not None:
                result.causes.insert(0, _served_cause(served.name, result.pending))
    if unrelated and len(unrelated) == len(keys):
        raise unrelated[0]  # the restriction relates to no selected feature: a mistake
    return {
        "store": config.name,
        "features": [results[k].to_json() for k in keys],
        "pending": any(results[k].pending for k in keys),
    }


def _served_cause(fallback: str, pending: bool) -> str:
    """Why a feature's rows come from a fallback store, and what a run does about it."""
    if not pending:
        return f"served by fallback store {fallback!r}"
    return f"served by fallback store {fallback!r}: a run takes its current rows here first"


def _restrict_upstreams(
    project: Project, session: Any, restrictions: Any, keys: Sequence[Any]
) -> None:
    """Compile the restriction for upstreams outside the selection, as stored, so selected
    features can follow it through them."""
    import contextlib

    from mxd_cli.engine.restrictions import types_of
    from mxd_cli.errors import FilterError

    selected = set(keys)
    ancestors = {u for k in keys for u in project.graph.upstream_closure(k)} - selected
    for key in (k for k in project.graph.order if k in ancestors):
        stored = session.locate(key)
        if stored is None:
            continue
        with contextlib.suppress(FilterError):
            restrictions.compile(
                project.graph[key], types_of(stored.schema), stored, session.feature_version(key)
            )


def graph_status(
    project: Project, selectors: Sequence[str] = (), *, store: str | None = None
) -> dict[str, Any]:
    """The feature graph with each feature's status and last run, for a picture of the pipeline
    (``mxd graph --format html``); read-only, like ``status``.

    Per feature: fields with their parent fields, deps, the ``status`` counts and causes, the
    last write, and the newest run that computed or checked it. Edges join selected features.
    """
    from mxd_cli.store.base import now_utc

    keys = project.graph.select(selectors)
    chosen = set(keys)
    listing = {f["feature"]: f for f in list_features(project, selectors)["features"]}
    statuses = {f["feature"]: f for f in status(project, selectors, store=store)["features"]}
    held = {f["feature"]: f for f in content(project, selectors, store=store)["features"]}
    history = runs(project, store=store, limit=1_000_000)["runs"]
    features = []
    for key in keys:
        name = str(key)
        last = next(
            (
                {"run_id": r["run_id"], "status": f["status"], "at": r["finished_at"]}
                for r in history
                for f in r["features"]
                if f["feature"] == name and f["status"] not in ("skipped", "pending")
            ),
            None,
        )
        features.append(
            {
                **{k: listing[name][k] for k in ("feature", "fields", "deps", "description")},
                **{k: v for k, v in statuses[name].items() if k != "feature"},
                "has_asset": listing[name]["has_asset"],
                "rows": held[name]["rows"],
                "last_written_at": held[name]["last_written_at"],
                "last_run": last,
            }
        )
    newest = history[0] if history else None
    return {
        "project": project.config.project,
        "store": project.config.store_config(store).name,
        "generated_at": now_utc().isoformat(),
        "last_run": None
        if newest is None
        else {k: newest[k] for k in ("run_id", "status", "started_at", "finished_at")},
        "features": features,
        "edges": [
            {"from": str(dep.feature), "to": str(key), "optional": dep.optional}
            for key in keys
            for dep in project.graph[key].spec.deps
            if dep.feature in chosen
        ],
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
    _warn_about(config)

    def plan(on: Any, parsed: dict[Any, Any]) -> DeletionPlan:
        return plan_deletion(
            project.graph, project.versions, on, parsed, mode=mode, cascade=cascade
        )

    reached = set(keys) | (
        {d for k in keys for d in project.graph.downstream_closure(k)} if cascade else set()
    )
    # Filters are checked (and a dry run planned) on a read-only store: nothing can change.
    # A branch deletes from rows of its own: features a fallback serves are taken into it
    # first (in an overlay of the engine here; for real below, when the delete reaches them).
    with (
        open_store(config, read_only=True) as reader,
        _fallbacks(project, config) as fallbacks,
        reader.session(),
    ):
        session = _session(project, reader, fallbacks, config)
        served = {k: s for k in sorted(reached) if (s := session.served_by(k)) is not None}
        parsed = {
            k: parse_feature_filters(project.graph[k], filters, served.get(k, reader)) for k in keys
        }
        adopted: dict[Any, int] = {}
        if dry_run or served:
            on = reader
            if served:
                from mxd_cli.store.overlay import OverlayStore

                on = OverlayStore(reader)
                overlay = _session(project, on, fallbacks, config)
                adopted = {k: overlay.adopt(k) for k in served}
            preview = plan(on, parsed)
    if dry_run:
        results = [
            DeletionResult(f.feature, f.matched, 0, f.physical_rows if hard else f.current)
            for f in preview.features
        ]
        return _deletion_report(config.name, preview, results, dry_run=True, adopted=adopted)
    taken = {f.feature for f in preview.features if f.matched} if served else set()
    with (
        open_store(config) as target,
        _writer(target, "mxd delete", wait),
        target.session(),
        _fallbacks(project, config) as fallbacks,
    ):
        session = _session(project, target, fallbacks, config)
        adopted = {k: session.adopt(k) for k in sorted(taken) if session.served_by(k)}
        chosen = plan(target, parsed)
        results = execute_deletion(chosen, target, project.versions)
    return _deletion_report(config.name, chosen, results, dry_run=False, adopted=adopted)


def _deletion_report(
    store: str,
    plan: Any,
    results: Sequence[Any],
    *,
    dry_run: bool,
    adopted: Mapping[Any, int] | None = None,
) -> dict[str, Any]:
    features = []
    for item, result in zip(plan.features, results, strict=True):
        features.append(
            {
                "feature": str(item.feature),
                "matched": result.matched,
                "deleted": result.deleted,
                "rows": result.rows,
                "cascade_from": [str(k) for k in item.cascade_from],
                "targeted": item.targeted,
                "adopted": (adopted or {}).get(item.feature, 0),
            }
        )
    return {
        "store": store,
        "dry_run": dry_run,
        "mode": plan.mode,
        "features": features,
        "matched": sum(f["matched"] for f in features),
        "deleted": sum(f["deleted"] for f in features),
        "rows": sum(f["rows"] for f in features),
    }


def content(
    project: Project,
    selectors: Sequence[str] = (),
    *,
    store: str | None = None,
    partition: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """What the selected features hold now: rows, data version, content fingerprint and last
    write, exactly as ``observe`` reports them, read-only and without recording anything or
    calling an asset. ``partition`` (column, value) counts only that partition's samples
    (features without the column count all of theirs).

    Example::

        api.content(project, ["shop/products"])["features"][0]["fingerprint"]
    """
    from sqlglot import exp

    from mxd_cli.engine.observation import content_of
    from mxd_cli.engine.sql import col, lit

    keys = project.graph.select(selectors)
    config = project.config.store_config(store)
    features = []
    with _opened(project, store, read_only=True) as (source, fallbacks):
        session = _session(project, source, fallbacks, config)
        for key in keys:
            where = None
            own = session.locate(key)
            if partition is not None and own is not None and partition[0] in own.schema.names:
                where = exp.cast(col(partition[0]), "VARCHAR").eq(lit(partition[1]))
            found = content_of(session, project.graph[key], where)
            last = found.last_written_at
            features.append(
                {
                    "feature": str(key),
                    "samples": found.sample_count,
                    "rows": found.rows,
                    "data_version": found.data_version,
                    "fingerprint": found.fingerprint,
                    "last_written_at": None if last is None else last.isoformat(),
                }
            )
    return {"store": config.name, "features": features}


def read(
    project: Project,
    feature: Any,
    *,
    columns: Sequence[str] | None = None,
    filter: str | None = None,
    store: str | None = None,
) -> Any:
    """A feature's current rows as a Polars DataFrame, from the store or the fallback that
    holds it (what an asset's ``ctx.read`` returns, for notebooks and scripts); read-only.

    Example::

        api.read(project, "docs/doc_stats", columns=["doc_id", "n_chunks"])
    """
    import polars as pl

    from mxd_cli.definitions.spec import feature_key_of

    key = feature_key_of(feature)
    config = project.config.store_config(store)
    with _opened(project, store, read_only=True) as (source, fallbacks):
        session = _session(project, source, fallbacks, config)
        query = session.current(key, columns, filter)
        return pl.DataFrame() if query is None else session.engine.frame(query)


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

    from mxd_cli.engine.observation import (
        observation_rows,
        observe_feature,
        previous_observations,
    )
    from mxd_cli.engine.runs import Checkpoints
    from mxd_cli.errors import LockError, StoreError
    from mxd_cli.store import OBSERVATIONS, open_store
    from mxd_cli.store.base import now_utc

    keys = project.graph.select(selectors)
    config = project.config.store_config(store)
    name = project.config.project
    with _opened(project, store, read_only=True) as (source, fallbacks):
        session = _session(project, source, fallbacks, config)
        checkpoints = Checkpoints(source, name, fallbacks)
        before = previous_observations(source, name, keys)
        seen = [
            observe_feature(
                session,
                project.graph[key],
                asset=project.registry.assets.get(key),
                checkpoints=checkpoints,
                project_dir=project.config.root,
                previous=before.get(key),
            )
            for key in keys
        ]
    at = now_utc()
    warning = None
    observed = [
        o.with_previous(before[o.feature].fingerprint if o.feature in before else None)
        for o in seen
    ]
    try:
        with open_store(config) as target, _writer(target, "mxd observe", wait):
            previous = previous_observations(target, name, keys)
            observed = [
                o.with_previous(previous[o.feature].fingerprint if o.feature in previous else None)
                for o in seen
            ]
            target.append(OBSERVATIONS, observation_rows(observed, name, at))
    except LockError as err:
        warning = f"observations not recorded: {err.message}"
    except StoreError as err:
        if (
            "read-only" not in err.message.lower()
            and "permission" not in err.message.lower()
            and "read only" not in err.message.lower()
        ):
            raise
        warning = f"observations not recorded (the store cannot be written): {err.message}"
    features = [o.to_json() for o in observed]
    return {
        "store": config.name,
        "observed_at": at.isoformat(),
        "recorded": warning is None,
        "warning": warning,
        "changed": any(f["changed"] for f in features),
        "features": features,
    }
