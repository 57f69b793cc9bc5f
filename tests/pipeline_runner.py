"""A minimal test runner: one pipeline step through mxd's engine, writing increment rows.

Downstream rows are written as the increment gives them (an identity asset), which is what
the golden runner does; root samples come from the feature's asset. The real materialize
command has its own tests.
"""

from __future__ import annotations

from mxd_cli import api
from mxd_cli.definitions.asset import AssetContext
from mxd_cli.engine.assets import root_samples
from mxd_cli.store import open_store
from tests.engine_steps import Steps


def run_step(project: api.Project, store: str | None = None) -> dict[str, int]:
    """Resolve and write every feature once; return rows written per feature."""
    config = project.config.store_config(store)
    written: dict[str, int] = {}
    with open_store(config) as target:
        steps = Steps(
            target,
            project.graph,
            project.versions,
            algorithm=config.hash_algorithm,
            length=project.config.hash_truncation_length,
            project=project.config.project,
        )
        for key in project.graph.order:
            node = project.graph[key]
            samples = None
            if node.is_root:
                ctx = AssetContext(key, run_id="test", project_dir=project.config.root)
                samples = root_samples(project.registry.assets[key], ctx)
            increment = steps.resolve(key, samples)
            written[str(key)] = steps.write(key, increment)
    return written
