"""mxd features as Dagster assets (``pip install "mxd-cli[dagster]"``).

One line gives Dagster the whole project::

    # definitions.py
    from mxd_cli.dagster import build_definitions

    defs = build_definitions("metaxy.toml")

A thin adapter over :mod:`mxd_cli.api`: materializing an asset is a one-feature
``mxd materialize`` (same increments, chunks, provenance, checkpoints, writer lock and run
history), observing is ``mxd observe``, and the delete job is ``mxd delete``. Nothing in
the rest of mxd imports this module, so the core never loads Dagster.
"""

# No ``from __future__ import annotations`` here: Dagster reads the annotations of op and
# asset functions at definition time (context and Config types) and needs real classes.

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from mxd_cli import api
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.results import FeatureResult, RunOptions
from mxd_cli.errors import MxdError, UsageError

__all__ = ["DELETE_JOB", "KIND", "MATERIALIZE_JOB", "OBSERVE_JOB", "build_definitions"]

KIND = "mxd"
MATERIALIZE_JOB = "mxd_materialize"
OBSERVE_JOB = "mxd_observe"
DELETE_JOB = "mxd_delete"
_COUNTS = ("new", "stale", "orphaned", "unchanged", "written", "deleted", "rows")
# What Dagster warns with about APIs it calls beta (ExperimentalWarning before 1.10).
_BETA_WARNING: type[Warning] = (
    getattr(dg, "BetaWarning", None) or getattr(dg, "ExperimentalWarning", None) or UserWarning
)


def build_definitions(
    config: str | Path,
    store: str | None = None,
    *,
    partitions: Mapping[str, dg.PartitionsDefinition[str]] | None = None,
) -> dg.Definitions:
    """Dagster definitions for the project of ``config`` (a ``metaxy.toml`` path).

    - one asset per feature: key = the feature key's parts, deps = its deps, code version =
      its feature version, group = the key's first part, kind ``mxd``, and metadata with the
      table, id columns, fields and versions. Features with an asset are materializable;
      features populated outside mxd are observable source assets.
    - jobs: ``mxd_materialize`` (every materializable asset), ``mxd_observe`` (op config
      ``select``: mxd selectors, default all) and ``mxd_delete`` (op config ``feature``,
      ``filters``, ``soft``, ``cascade``, ``all_rows``).
    - ``partitions``: ``{"column": PartitionsDefinition}``; partition key K of a run becomes
      ``mxd materialize --partition column=K`` and every asset is partitioned.

    Steps run in one process, one after the other (the store has one writer at a time).

    Example::

        defs = build_definitions(
            "metaxy.toml", partitions={"day": dg.DailyPartitionsDefinition("2026-11-01")}
        )
    """
    project = api.Project.load(Path(config))
    column, partitions_def = _partitioning(partitions)
    assets: list[Any] = []
    materializable: list[dg.AssetKey] = []
    for key in project.graph.order:
        spec = _spec(project, key)
        if key in project.registry.assets:
            assets.append(_materializable(project, store, key, spec, column, partitions_def))
            materializable.append(spec.key)
        else:
            assets.append(_observable(project, store, key, spec))
    jobs: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
        dg.define_asset_job(
            MATERIALIZE_JOB,
            selection=dg.AssetSelection.assets(*materializable),
            description="mxd materialize: every feature with an asset, on its increment",
        ),
        _observe_job(project, store),
        _delete_job(project, store),
    ]
    return dg.Definitions(assets=assets, jobs=jobs, executor=dg.in_process_executor)


# definitions
def _partitioning(
    partitions: Mapping[str, dg.PartitionsDefinition[str]] | None,
) -> tuple[str | None, dg.PartitionsDefinition[str] | None]:
    if not partitions:
        return None, None
    if len(partitions) != 1:
        raise UsageError(
            f"partitions maps one column to a Dagster PartitionsDefinition; got {len(partitions)}",
            hint='e.g. partitions={"day": dg.DailyPartitionsDefinition(start_date="2026-11-01")}',
        )
    ((column, definition),) = partitions.items()
    if isinstance(definition, dg.MultiPartitionsDefinition):
        raise UsageError(
            "multi-dimensional partitions are not supported: mxd partitions by one column",
            hint="partition by one column (mxd materialize --partition COLUMN=VALUE)",
        )
    return column, definition


def _asset_key(key: FeatureKey) -> dg.AssetKey:
    return dg.AssetKey(list(key.parts))


def _spec(project: api.Project, key: FeatureKey) -> dg.AssetSpec:
    node = project.graph[key]
    versions = project.versions[key]
    metadata: dict[str, Any] = {
        "mxd/feature": str(key),
        "mxd/feature_version": versions.feature_version,
        "mxd/table": key.table_name,
        "mxd/id_columns": list(node.spec.id_columns),
        "mxd/fields": api.fields_of(project, key),
        "dagster/table_name": key.table_name,
    }
    if node.spec.metadata:
        metadata["mxd/spec_metadata"] = dict(node.spec.metadata)
    return dg.AssetSpec(
        _asset_key(key),
        deps=[_asset_key(up) for up in node.upstream],
        description=node.spec.description or f"mxd feature {key}",
        metadata=metadata,
        group_name=key.parts[0].replace("-", "_"),
        code_version=versions.feature_version,
        kinds={KIND},
    )


def _op_name(prefix: str, key: FeatureKey) -> str:
    return prefix + key.table_name  # table names are valid Dagster names


def _materializable(
    project: api.Project,
    store: str | None,
    key: FeatureKey,
    spec: dg.AssetSpec,
    column: str | None,
    partitions_def: dg.PartitionsDefinition[str] | None,
) -> dg.AssetsDefinition:
    @dg.multi_asset(specs=[spec], name=_op_name("", key), partitions_def=partitions_def)
    def materialize(context: dg.AssetExecutionContext) -> dg.MaterializeResult[Any]:
        partition = None if column is None else (column, context.partition_key)
        return _materialize_feature(context, project, store, key, partition)

    return materialize


def _observable(
    project: api.Project, store: str | None, key: FeatureKey, spec: dg.AssetSpec
) -> dg.AssetsDefinition:
    # Observable source assets are "beta" in Dagster; they are what Dagster offers for data
    # written elsewhere, and the warning would reach every user of mxd's definitions.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _BETA_WARNING)

        @dg.multi_observable_source_asset(  # type: ignore[untyped-decorator]
            specs=[spec], name=_op_name("observe_", key)
        )
        def observe(context: dg.AssetExecutionContext) -> Iterator[dg.ObserveResult]:
            (seen,) = _observe(context, project, store, [str(key)])
            with warnings.catch_warnings():  # ObserveResult is experimental in Dagster 1.9
                warnings.simplefilter("ignore", _BETA_WARNING)
                result = dg.ObserveResult(
                    asset_key=spec.key,
                    metadata=_observation_metadata(seen),
                    data_version=dg.DataVersion(seen["fingerprint"]),
                )
            yield result

    assert isinstance(observe, dg.AssetsDefinition)
    return observe


# materialize
def _materialize_feature(
    context: dg.AssetExecutionContext,
    project: api.Project,
    store: str | None,
    key: FeatureKey,
    partition: tuple[str, str] | None,
) -> dg.MaterializeResult[Any]:
    options = RunOptions(selectors=(str(key),), partition=partition)
    with _mxd_logs_to(context.log), _failures_as_dagster():
        run = api.materialize(project, options, store=store, listener=_LogListener(context.log))
        (result,) = run.features
        if result.status not in ("success", "up_to_date"):
            raise dg.Failure(
                description=f"{key} {result.status}: {result.error or result.note}",
                metadata={"mxd/run_id": run.run_id, "mxd/status": result.status},
            )
        (held,) = api.content(project, [str(key)], store=store, partition=partition)["features"]
    return dg.MaterializeResult(
        metadata=_materialization_metadata(result, run.run_id, held),
        data_version=dg.DataVersion(held["fingerprint"]),
    )


def _materialization_metadata(
    result: FeatureResult, run_id: str, held: Mapping[str, Any]
) -> dict[str, Any]:
    # The asset's own ctx.add_metadata first: mxd's keys are reserved and win.
    metadata: dict[str, Any] = dict(result.metadata)
    metadata["dagster/row_count"] = held["rows"]
    metadata.update({f"mxd/{name}": getattr(result, name) for name in _COUNTS})
    metadata["mxd/status"] = result.status
    metadata["mxd/run_id"] = run_id
    metadata["mxd/fingerprint"] = held["fingerprint"]
    metadata["mxd/data_version"] = held["data_version"]
    return metadata


class _LogListener:
    """The run's progress as Dagster log lines (one per feature, one per chunk at debug)."""

    def __init__(self, log: dg.DagsterLogManager) -> None:
        self.log = log

    def feature_started(self, feature: str, total: int) -> None:
        if total:
            self.log.info(f"{feature}: {total} rows to compute")

    def rows_done(self, feature: str, rows: int) -> None:
        self.log.debug(f"{feature}: {rows} rows done")

    def feature_finished(self, result: FeatureResult) -> None:
        line = (
            f"{result.feature}: {result.status}, {result.written} written, {result.deleted} deleted"
        )
        self.log.info(line + (f" ({result.note})" if result.note else ""))


class _ToDagsterLog(logging.Handler):
    def __init__(self, log: dg.DagsterLogManager) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.log(record.levelno, f"{record.name}: {record.getMessage()}")


@contextmanager
def _mxd_logs_to(log: dg.DagsterLogManager) -> Iterator[None]:
    """mxd's loggers (asset ``ctx.log`` included) into the step's Dagster log."""
    logger = logging.getLogger("mxd")
    handler, level, propagate = _ToDagsterLog(log), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextmanager
def _failures_as_dagster() -> Iterator[None]:
    """An mxd error fails the Dagster step with mxd's message and hint."""
    try:
        yield
    except MxdError as err:
        description = str(err) + (f"\nHint: {err.hint}" if err.hint else "")
        raise dg.Failure(
            description=description,
            metadata={"mxd/error": err.code, "mxd/hint": err.hint or ""},
            # Bad input (exit code 2: config, definitions, filters) fails the same way again.
            allow_retries=err.exit_code != 2,
        ) from err


# observe
def _observe(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    project: api.Project,
    store: str | None,
    selectors: Sequence[str],
) -> list[dict[str, Any]]:
    with _mxd_logs_to(context.log), _failures_as_dagster():
        report = api.observe(project, selectors, store=store)
    if report["warning"]:
        context.log.warning(report["warning"])
    features: list[dict[str, Any]] = report["features"]
    return features


def _observation_metadata(seen: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dagster/row_count": seen["rows"],
        "mxd/fingerprint": seen["fingerprint"],
        "mxd/data_version": seen["data_version"],
        "mxd/last_written_at": seen["last_written_at"],
        "mxd/changed": seen["changed"],
        **{f"mxd/behind_{k}": v for k, v in seen["behind"].items()},
    }


class ObserveConfig(dg.Config):
    """``select``: mxd selectors (keys, globs, +key, key+, tag:NAME); empty: every feature."""

    select: list[str] = []  # noqa: RUF012 (pydantic copies defaults)


def _observe_job(project: api.Project, store: str | None) -> dg.JobDefinition:
    @dg.op(name="observe_features", tags={"kind": KIND})
    def observe_features(context: dg.OpExecutionContext, config: ObserveConfig) -> None:
        """mxd observe: rows, data version and lag of each feature, without computing."""
        for seen in _observe(context, project, store, config.select):
            context.log_event(
                dg.AssetObservation(
                    asset_key=_asset_key(FeatureKey.parse(seen["feature"])),
                    metadata=_observation_metadata(seen),
                    tags={"dagster/data_version": seen["fingerprint"]},
                )
            )

    @dg.job(name=OBSERVE_JOB, description="mxd observe: record what each feature holds")
    def observe_job() -> None:
        observe_features()

    return observe_job


# delete
class DeleteConfig(dg.Config):
    """What ``mxd delete`` takes: one feature, SQL filters (ANDed), soft or hard."""

    feature: str
    filters: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    soft: bool = True
    cascade: bool = False
    all_rows: bool = False
    dry_run: bool = False


def _delete_job(project: api.Project, store: str | None) -> dg.JobDefinition:
    @dg.op(name="delete_metadata", tags={"kind": KIND})
    def delete_metadata(context: dg.OpExecutionContext, config: DeleteConfig) -> None:
        """mxd delete: soft (tombstones) or hard delete of the rows the filters match."""
        if not config.filters and not config.all_rows:
            raise dg.Failure(
                description="no filters given: refusing to delete every row",
                metadata={"mxd/hint": "set filters, or all_rows: true to delete every row"},
                allow_retries=False,
            )
        with _mxd_logs_to(context.log), _failures_as_dagster():
            report = api.delete(
                project,
                [config.feature],
                filters=config.filters,
                all_rows=config.all_rows,
                hard=not config.soft,
                cascade=config.cascade,
                dry_run=config.dry_run,
                store=store,
            )
            if config.dry_run:
                held = {}
            else:
                chosen = [f["feature"] for f in report["features"]]
                held = {
                    f["feature"]: f for f in api.content(project, chosen, store=store)["features"]
                }
        verb = "would delete" if config.dry_run else "deleted"
        for item in report["features"]:
            context.log.info(
                f"{item['feature']}: {item['matched']} matched, {verb} {report['mode']}"
            )
            metadata: dict[str, Any] = {
                "mxd/matched": item["matched"],
                "mxd/deleted": item["deleted"],
                "mxd/mode": report["mode"],
                "mxd/dry_run": config.dry_run,
            }
            tags = {}
            if item["feature"] in held:
                now = held[item["feature"]]
                metadata["dagster/row_count"] = now["rows"]
                metadata["mxd/fingerprint"] = now["fingerprint"]
                tags["dagster/data_version"] = now["fingerprint"]
            context.log_event(
                dg.AssetObservation(
                    asset_key=_asset_key(FeatureKey.parse(item["feature"])),
                    metadata=metadata,
                    tags=tags,
                )
            )

    @dg.job(name=DELETE_JOB, description="mxd delete: rows matching SQL filters, soft or hard")
    def delete_job() -> None:
        delete_metadata()

    return delete_job
