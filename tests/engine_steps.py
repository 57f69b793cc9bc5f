"""One pipeline step at a time through mxd's engine, for tests that drive it directly.

``Steps(store, graph, versions, algorithm=..., length=..., fallbacks=...)``:
``resolve(key, samples)`` gives the feature's :class:`~mxd_cli.engine.increment.Increment`
(root samples as a frame; a feature a fallback serves is adopted first when it changes), ``write(key, increment)`` writes its new and stale rows as an identity asset would
and soft-deletes its orphans — what the golden runner and the oracle assume a step does.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.increment import Baseline, Increment, resolve
from mxd_cli.engine.plan import HashSettings
from mxd_cli.engine.roots import stage_samples
from mxd_cli.engine.session import Session
from mxd_cli.engine.writer import FeatureWriter
from mxd_cli.graph import FeatureGraph
from mxd_cli.store.base import MetadataStore
from mxd_cli.versioning import GraphVersions


class Steps:
    def __init__(
        self,
        store: MetadataStore,
        graph: FeatureGraph,
        versions: GraphVersions,
        *,
        algorithm: str = "xxhash32",
        length: int = 8,
        project: str = "t",
        fallbacks: Sequence[MetadataStore] = (),
    ) -> None:
        self.store = store
        self.graph = graph
        self.versions = versions
        self.project = project
        self.session = Session(
            graph,
            versions,
            store,
            fallbacks,
            hashing=HashSettings(algorithm, length),
            project=project,
        )

    def resolve(
        self,
        key: FeatureKey,
        samples: pl.DataFrame | None = None,
        *,
        baseline: Baseline | None = None,
        full: bool = False,
    ) -> Increment:
        node = self.graph[key]
        staged = None
        if node.is_root:
            frame = samples if samples is not None else pl.DataFrame()
            staged = stage_samples(self.session, node, [frame]).source
        found = resolve(self.session, key, samples=staged, baseline=baseline, full=full)
        if found.pending and self.session.served_by(key) is not None:
            # A run changes a feature a fallback serves only after taking its rows here:
            # the same work, measured against them.
            self.session.adopt(key)
            adopted = resolve(self.session, key, samples=staged, baseline=baseline, full=full)
            assert adopted.counts == found.counts, (key, found.counts, adopted.counts)
            return adopted
        return found

    def writer(self, key: FeatureKey) -> FeatureWriter:
        return FeatureWriter(
            self.store,
            self.graph[key],
            self.versions,
            project=self.project,
            algorithm=self.session.hashing.algorithm,
            length=self.session.hashing.length,
            graph=self.graph,
        )

    def write(self, key: FeatureKey, increment: Increment, rows: pl.DataFrame | None = None) -> int:
        """Write new and stale rows (``rows``: what an asset returned for them instead),
        then tombstone the orphans; returns the rows written."""
        writer = self.writer(key)
        data = increment.to_compute() if rows is None else rows
        written = writer.write(data) if data.height else 0
        gone = increment.compare.orphans()
        if increment.counts["orphaned"] and gone is not None:
            own = self.session.locate(key)
            assert own is not None
            writer.soft_delete_query(gone, list(own.schema.names))
        self.forget(key)
        return written

    def forget(self, key: FeatureKey) -> None:
        self.session.forget(key)
