"""Use cases behind the commands. The CLI is one user of these functions; scripts may be others.

Every function takes a loaded :class:`Project` and returns plain data (dicts, lists,
dataclasses) that the CLI renders as tables or JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxd_cli.config import Config, load_config
from mxd_cli.definitions.loader import load_entrypoints
from mxd_cli.definitions.registry import Registry
from mxd_cli.errors import DefinitionError, did_you_mean
from mxd_cli.graph import FeatureGraph
from mxd_cli.versioning import GraphVersions


@dataclass(frozen=True)
class Project:
    """A loaded project: config, definitions, graph and versions."""

    config: Config
    registry: Registry
    graph: FeatureGraph
    versions: GraphVersions

    @classmethod
    def load(
        cls,
        config_path: Path | None = None,
        *,
        cwd: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Project:
        config = load_config(config_path, cwd=cwd, environ=environ)
        registry = load_entrypoints(config.root, config.entrypoints)
        graph = FeatureGraph(registry.features.values())
        _check_assets(registry, graph)
        return cls(config, registry, graph, GraphVersions(graph, config.hash_truncation_length))


def _check_assets(registry: Registry, graph: FeatureGraph) -> None:
    for key, asset in registry.assets.items():
        if key not in graph:
            raise DefinitionError(
                f"asset {asset.name!r} is bound to unknown feature {key}",
                hint=did_you_mean(str(key), [str(k) for k in graph.order]),
                location=str(asset.origin),
            )
        wanted = 1 if graph[key].is_root else 2
        if asset.arity != wanted:
            shape = "(ctx)" if wanted == 1 else "(ctx, rows)"
            kind = "root" if wanted == 1 else "downstream"
            raise DefinitionError(
                f"asset {asset.name!r} of {kind} feature {key} must take {shape}",
                hint="a root asset returns every current sample; a downstream asset gets the "
                "increment's rows in chunks",
                location=str(asset.origin),
            )


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


def _open(project: Project, store: str | None, *, read_only: bool) -> tuple[Any, list[Any]]:
    from mxd_cli.store import open_store

    config = project.config.store_config(store)
    target = open_store(config, read_only=read_only)
    fallbacks = [
        open_store(project.config.store_config(name), read_only=True)
        for name in config.fallback_stores
    ]
    return target, fallbacks


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
    target, fallbacks = _open(project, store, read_only=True)
    results: dict[Any, FeatureStatus] = {}
    try:
        with target.session():
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
    finally:
        target.close()
        for fb in fallbacks:
            fb.close()
    return {
        "store": config.name,
        "features": [results[k].to_json() for k in keys],
        "pending": any(results[k].pending for k in keys),
    }
