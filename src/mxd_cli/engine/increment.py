"""Increment resolution: which samples of a feature are new, stale or orphaned.

``new``: expected samples not stored under the current feature version; ``stale``: stored
with a different ``metaxy_provenance``; ``orphaned``: stored but no longer expected. A
feature-version change therefore makes every sample new (nothing is compared across
versions), exactly as Metaxy does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.provenance import with_root_provenance
from mxd_cli.engine.upstream import ReadCurrent, expected_samples, sample_key
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c

_STORED = "__mxd_stored_provenance"


@dataclass(frozen=True)
class Increment:
    """The work a feature needs: frames of new, stale and orphaned samples, and counts."""

    feature: FeatureKey
    key_columns: tuple[str, ...]
    new: pl.DataFrame
    stale: pl.DataFrame
    orphaned: pl.DataFrame
    unchanged: int
    stored: int

    def counts(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "new": _distinct(self.new, self.key_columns),
            "stale": _distinct(self.stale, self.key_columns),
            "orphaned": _distinct(self.orphaned, self.key_columns),
            "unchanged": self.unchanged,
        }

    @property
    def pending(self) -> bool:
        return bool(self.new.height or self.stale.height or self.orphaned.height)

    def to_compute(self) -> pl.DataFrame:
        """New and stale samples together: what the asset must (re)compute."""
        return pl.concat([self.new, self.stale], how="diagonal_relaxed")


def _distinct(frame: pl.DataFrame, key: Sequence[str]) -> int:
    return frame.select(key).n_unique() if frame.height else 0


def resolve_increment(
    node: FeatureNode,
    graph: FeatureGraph,
    read: ReadCurrent,
    *,
    algorithm: str,
    length: int,
    samples: pl.LazyFrame | pl.DataFrame | None = None,
    restrict: pl.Expr | None = None,
    own: ReadCurrent | None = None,
    full: bool = False,
) -> Increment:
    """Compare what a feature should hold with what its store holds.

    Root features need ``samples`` (every current sample, as the asset returns them);
    downstream features read their upstreams through ``read``, which returns a feature's
    current rows at its current feature version (or None when it has none). ``restrict``
    limits the comparison to some samples (partitions, --filter, --keys): samples outside it
    are neither expected nor orphaned. ``own`` reads the feature's own current rows when
    they must come from elsewhere than ``read`` (the target store, not its fallbacks).
    ``full``: every stored sample counts as stale (recompute everything).
    """
    key = list(sample_key(node))
    if node.is_root:
        if samples is None:
            raise AssetError(f"{node.key} is a root feature: resolving it needs its samples")
        expected: pl.LazyFrame | None = with_root_provenance(
            samples.lazy(), node, algorithm, length
        )
    else:
        expected = expected_samples(node, graph, read, algorithm, length)
    current = (own or read)(node.key)
    if restrict is not None:
        expected = None if expected is None else expected.filter(restrict)
        current = None if current is None else current.filter(restrict)
    collapse = tuple(key) != node.spec.id_columns
    return compare(node.key, tuple(key), expected, current, collapse=collapse, full=full)


def compare(
    feature: FeatureKey,
    key: tuple[str, ...],
    expected: pl.LazyFrame | None,
    current: pl.LazyFrame | None,
    *,
    collapse: bool = False,
    full: bool = False,
) -> Increment:
    """Split expected samples against current rows (both lazy; collected together here).

    ``collapse``: stored rows are children of the samples (expansion lineage), so several
    rows share one sample key; any non-null provenance among them stands for the sample.
    """
    keys = list(key)
    if current is None:
        if expected is None:
            empty = pl.DataFrame()
            return Increment(feature, key, empty, empty, empty, 0, 0)
        new = expected.collect()
        return Increment(feature, key, new, new.clear(), pl.DataFrame(), 0, 0)
    stored = current.select(*keys, pl.col(c.PROVENANCE).alias(_STORED))
    if collapse:
        stored = stored.group_by(keys).agg(pl.col(_STORED).drop_nulls().first())
    if expected is None:
        orphaned = current.collect()
        count = stored_rows(orphaned, keys, collapse).height
        return Increment(feature, key, pl.DataFrame(), pl.DataFrame(), orphaned, 0, count)
    _check_key_types(feature, keys, expected, stored)
    # Each side is computed once (a lazy plan shared by several outputs would be recomputed
    # for each), then split eagerly.
    want, have = pl.collect_all([expected, current])
    stored_df = stored_rows(have, keys, collapse)
    matched = want.join(stored_df, on=keys, how="left", coalesce=True)
    present = pl.col(_STORED).is_not_null()
    differs = present if full else present & (pl.col(_STORED) != pl.col(c.PROVENANCE))
    new = matched.filter(~present).drop(_STORED)
    stale = matched.filter(differs).drop(_STORED)
    unchanged = matched.filter(present & ~differs).select(keys).unique().height
    orphaned = have.join(want.select(keys).unique(), on=keys, how="anti")
    return Increment(feature, key, new, stale, orphaned, unchanged, stored_df.height)


def stored_rows(current: pl.DataFrame, keys: list[str], collapse: bool) -> pl.DataFrame:
    """Sample keys with their stored provenance (one row per sample)."""
    stored = current.select(*keys, pl.col(c.PROVENANCE).alias(_STORED))
    if collapse:
        stored = stored.group_by(keys).agg(pl.col(_STORED).drop_nulls().first())
    return stored


def _check_key_types(
    feature: FeatureKey, keys: list[str], expected: pl.LazyFrame, stored: pl.LazyFrame
) -> None:
    want, have = expected.collect_schema(), stored.collect_schema()
    for k in keys:
        if k not in want:
            raise AssetError(f"{feature}: expected samples lack the id column {k!r}")
        if want[k] != have[k]:
            raise AssetError(
                f"{feature}: id column {k!r} is {want[k]} in the new samples but {have[k]} "
                "in the store",
                hint="return ids of the same type as before, or rebuild the feature",
            )
