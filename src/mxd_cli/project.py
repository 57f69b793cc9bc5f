"""A loaded project: config, definitions, graph and versions, checked together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
        _check_dep_filters(graph)
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
        if asset.source_version is not None and not graph[key].is_root:
            raise DefinitionError(
                f"asset {asset.name!r} of downstream feature {key} has a source_version",
                hint="only root assets read outside sources; downstream features are "
                "tracked through their upstreams",
                location=str(asset.origin),
            )


def _check_dep_filters(graph: FeatureGraph) -> None:
    """Every ``FeatureDep(filters=...)`` parses into the allowed SQL subset (its columns are
    checked against the upstream's stored schema before a run writes anything)."""
    from mxd_cli.engine.filters import parse_filters
    from mxd_cli.errors import FilterError

    for key in graph.order:
        node = graph[key]
        for dep in node.spec.deps:
            if not dep.filters:
                continue
            try:
                parse_filters(list(dep.filters))
            except FilterError as err:
                raise DefinitionError(
                    f"feature {key}: filter of its dep on {dep.feature}: {err.message}",
                    hint=err.hint,
                    location=str(node.origin),
                ) from None
