"""Current rows of features, from the target store or, for upstreams, its fallback stores."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.graph import FeatureGraph
from mxd_cli.store.base import MetadataStore
from mxd_cli.versioning import GraphVersions


class CurrentRows:
    """``reader(key)``: a feature's current rows at its current feature version, or None.

    A feature absent from the target store is read from the first fallback store that has
    it (fallbacks are read-only sources for upstream features, as in Metaxy).
    """

    def __init__(
        self,
        store: MetadataStore,
        graph: FeatureGraph,
        versions: GraphVersions,
        fallbacks: Sequence[MetadataStore] = (),
    ) -> None:
        self.store = store
        self.graph = graph
        self.versions = versions
        self.fallbacks = list(fallbacks)
        self._where: dict[FeatureKey, MetadataStore | None] = {}
        # Rows already read, per (store, feature): a root is read as itself and again as
        # its dependents' upstream; one read serves all until the feature is written.
        self._rows: dict[tuple[int, FeatureKey], pl.LazyFrame | None] = {}

    def source(self, key: FeatureKey) -> MetadataStore | None:
        """The store that holds ``key``, or None."""
        if key not in self._where:
            table = key.parts
            found = next((s for s in [self.store, *self.fallbacks] if s.has(table)), None)
            self._where[key] = found
        return self._where[key]

    def forget(self, key: FeatureKey) -> None:
        """Drop what is cached about ``key`` (after writing it)."""
        self._where.pop(key, None)
        for cached in [k for k in self._rows if k[1] == key]:
            del self._rows[cached]

    def __call__(self, key: FeatureKey) -> pl.LazyFrame | None:
        """Rows of an upstream: from the target store, else the first fallback with it."""
        return self._read(self.source(key), key)

    def own(self, key: FeatureKey) -> pl.LazyFrame | None:
        """Rows of the feature being resolved: from the target store only (a feature that
        only a fallback holds still has to be written to the target)."""
        return self._read(self.store if self.store.has(key.parts) else None, key)

    def _read(self, store: MetadataStore | None, key: FeatureKey) -> pl.LazyFrame | None:
        if store is None:
            return None
        slot = (id(store), key)
        if slot not in self._rows:
            frame = store.read(
                key.parts,
                self.graph[key].spec.id_columns,
                feature_version=self.versions.feature_version(key),
            )
            # Collected once: a lazy read would be recomputed by every plan that uses it.
            self._rows[slot] = None if frame is None else frame.collect().lazy()
        return self._rows[slot]
