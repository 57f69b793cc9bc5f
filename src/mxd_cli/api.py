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
