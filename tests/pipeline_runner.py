"""A minimal test runner: one pipeline step through mxd's engine, writing increment rows.

Downstream rows are written as the increment gives them (an identity asset), which is what
the golden runner does; root samples come from the feature's asset. The real materialize
command has its own tests.
"""

from __future__ import annotations

from mxd_cli import api
from mxd_cli.definitions.asset import AssetContext
from mxd_cli.engine.assets import root_samples
from mxd_cli.engine.increment import resolve_increment
from mxd_cli.engine.reader import CurrentRows
from mxd_cli.engine.writer import FeatureWriter
from mxd_cli.store import open_store


def run_step(project: api.Project, store: str | None = None) -> dict[str, int]:
    """Resolve and write every feature once; return rows written per feature."""
    config = project.config.store_config(store)
    written: dict[str, int] = {}
    with open_store(config) as target, target.session():
        reader = CurrentRows(target, project.graph, project.versions)
        for key in project.graph.order:
            node = project.graph[key]
            samples = None
            if node.is_root:
                ctx = AssetContext(key, run_id="test", project_dir=project.config.root)
                samples = root_samples(project.registry.assets[key], ctx)
            inc = resolve_increment(
                node,
                project.graph,
                reader,
                algorithm=config.hash_algorithm,
                length=project.config.hash_truncation_length,
                samples=samples,
                own=reader.own,
            )
            writer = FeatureWriter(
                target,
                node,
                project.versions,
                project=project.config.project,
                algorithm=config.hash_algorithm,
                length=project.config.hash_truncation_length,
            )
            written[str(key)] = writer.write(inc.to_compute())
            writer.soft_delete(inc.orphaned)
            reader.forget(key)
    return written
