"""Observations: what a feature's store table holds now, without computing anything.

Per feature: the current rows (at the current feature version), two data versions, the
last write time and how far the feature is behind its upstreams.

- ``data_version`` follows the Metaxy–Dagster convention: the mean ``metaxy_created_at``
  of the current rows (ISO 8601), ``"empty"`` when there are none. It moves on most
  additions and deletions but misses, for instance, a sample replaced at the same instant.
- ``fingerprint`` is order independent and exact: per current sample a stable 64-bit hash
  (polars-hash xxhash64 and wyhash, never Polars' per-process ``hash()``) of its ids and
  ``metaxy_data_version``, summed modulo 2**64 per hash. Any added, removed or recomputed
  sample changes it. ``changed`` is based on it.

``changed``: the fingerprint differs from the previous observation of the feature in this
store; with no previous observation, the feature is changed when it holds rows (a sensor's
first look at data counts as news, an empty table does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import polars_hash  # noqa: F401  (registers the .nchash expression namespace)

from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.assets import root_samples
from mxd_cli.engine.increment import resolve_increment
from mxd_cli.engine.upstream import ReadCurrent
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureGraph, FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import OBSERVATIONS, MetadataStore

EMPTY = "empty"
CHANGED_BASIS = "fingerprint"
_HALF = 1 << 32
_MOD = 1 << 64
_BEHIND = ("new", "stale", "orphaned")

OBSERVATIONS_SCHEMA: dict[str, pl.DataType] = {
    "observed_at": c.TIMESTAMP,
    "project": pl.String(),
    "feature": pl.String(),
    "feature_version": pl.String(),
    "rows": pl.Int64(),
    "data_version": pl.String(),
    "fingerprint": pl.String(),
    "last_written_at": c.TIMESTAMP,
    "changed": pl.Boolean(),
    "behind_new": pl.Int64(),
    "behind_stale": pl.Int64(),
    "behind_orphaned": pl.Int64(),
}


@dataclass(frozen=True)
class Content:
    """What one feature's table holds: current samples and their versions."""

    rows: int
    data_version: str
    fingerprint: str
    last_written_at: datetime | None


def _sample_text(id_columns: Sequence[str], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """``id=value|...|dv=<metaxy_data_version>`` per row (names keep columns apart)."""
    parts = [pl.lit(f"{k}=") + pl.col(k).cast(pl.String).fill_null("\x00") for k in id_columns]
    version = pl.col(c.DATA_VERSION) if c.DATA_VERSION in schema else pl.lit(None, pl.String)
    parts.append(pl.lit("dv=") + version.cast(pl.String).fill_null("\x00"))
    return pl.concat_str(parts, separator="|")


def content_of(
    current: pl.LazyFrame | None, history: pl.LazyFrame | None, id_columns: Sequence[str]
) -> Content:
    """Row count, data versions and last write of a feature (one pass over each frame)."""
    last: datetime | None = None
    if history is not None:
        names = history.collect_schema().names()
        stamps = [pl.col(n).max() for n in (c.UPDATED_AT, c.DELETED_AT) if n in names]
        if stamps:
            last = history.select(pl.max_horizontal(stamps)).collect().item()
    if current is None:
        return Content(0, EMPTY, _render(0, 0, 0, 0), last)
    schema = current.collect_schema()
    text = _sample_text(id_columns, schema)
    hashes = {
        "a": text.nchash.xxhash64(),  # type: ignore[attr-defined]
        "b": text.nchash.wyhash(),  # type: ignore[attr-defined]
    }
    sums = [
        expr
        for name, h in hashes.items()
        for expr in ((h // _HALF).sum().alias(f"{name}_hi"), (h % _HALF).sum().alias(f"{name}_lo"))
    ]
    created = pl.col(c.CREATED_AT).mean() if c.CREATED_AT in schema else pl.lit(None, c.TIMESTAMP)
    stats = current.select(pl.len().alias("rows"), created.alias("mean"), *sums).collect()
    row = stats.row(0, named=True)
    rows = int(row["rows"])
    mean = row["mean"]
    data_version = EMPTY if rows == 0 or mean is None else _iso(mean)
    fingerprint = _render(row["a_hi"] or 0, row["a_lo"] or 0, row["b_hi"] or 0, row["b_lo"] or 0)
    return Content(rows, data_version, fingerprint, last)


def _render(a_hi: int, a_lo: int, b_hi: int, b_lo: int) -> str:
    # The halves were summed separately so no sum overflows; fold them here, mod 2**64.
    a = (a_hi * _HALF + a_lo) % _MOD
    b = (b_hi * _HALF + b_lo) % _MOD
    return f"{a:016x}{b:016x}"


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@dataclass(frozen=True)
class Observation:
    """One feature observed: its content, lag behind upstream, and change since last time."""

    feature: FeatureKey
    feature_version: str
    content: Content
    behind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_BEHIND, 0))
    error: str | None = None
    changed: bool = False
    previous_fingerprint: str | None = None

    def with_previous(self, previous: str | None) -> Observation:
        """This observation compared with the previous fingerprint (None: first one)."""
        if previous is None:
            changed = self.content.rows > 0
        else:
            changed = previous != self.content.fingerprint
        return Observation(
            self.feature,
            self.feature_version,
            self.content,
            self.behind,
            self.error,
            changed,
            previous,
        )

    def to_json(self) -> dict[str, Any]:
        last = self.content.last_written_at
        return {
            "feature": str(self.feature),
            "rows": self.content.rows,
            "data_version": self.content.data_version,
            "fingerprint": self.content.fingerprint,
            "previous_fingerprint": self.previous_fingerprint,
            "changed": self.changed,
            "changed_basis": CHANGED_BASIS,
            "last_written_at": None if last is None else _iso(last),
            "feature_version": self.feature_version,
            "behind": dict(self.behind),
            "error": self.error,
        }


def behind_upstream(
    node: FeatureNode,
    graph: FeatureGraph,
    read: ReadCurrent,
    own: ReadCurrent,
    *,
    asset: AssetDefinition | None,
    project_dir: Path,
    algorithm: str,
    length: int,
) -> dict[str, int]:
    """New, stale and orphaned samples, as ``mxd status`` counts them.

    A root feature is compared with what its asset returns now; a root without an asset
    (populated outside mxd) has nothing to be behind, so it reports zeros.
    """
    samples = None
    if node.is_root:
        if asset is None:
            return dict.fromkeys(_BEHIND, 0)
        samples = root_samples(asset, AssetContext(node.key, "observe", project_dir))
    increment = resolve_increment(
        node, graph, read, algorithm=algorithm, length=length, samples=samples, own=own
    )
    counts = increment.counts()
    return {k: counts[k] for k in _BEHIND}


def observe_feature(
    node: FeatureNode,
    graph: FeatureGraph,
    store: MetadataStore,
    read: ReadCurrent,
    own: ReadCurrent,
    *,
    feature_version: str,
    asset: AssetDefinition | None,
    project_dir: Path,
    algorithm: str,
    length: int,
) -> Observation:
    """Observe one feature in ``store`` (read-only; an asset failure is reported, not raised)."""
    content = content_of(own(node.key), store.scan(node.key.parts), node.spec.id_columns)
    try:
        behind = behind_upstream(
            node,
            graph,
            read,
            own,
            asset=asset,
            project_dir=project_dir,
            algorithm=algorithm,
            length=length,
        )
    except AssetError as err:
        return Observation(node.key, feature_version, content, error=str(err))
    return Observation(node.key, feature_version, content, behind)


def previous_fingerprints(
    store: MetadataStore, project: str, features: Iterable[FeatureKey]
) -> dict[FeatureKey, str]:
    """The fingerprint of each feature's latest recorded observation in ``store``."""
    recorded = store.scan(OBSERVATIONS)
    if recorded is None:
        return {}
    wanted = {str(k): k for k in features}
    latest = (
        recorded.filter((pl.col("project") == project) & pl.col("feature").is_in(list(wanted)))
        .sort("observed_at")
        .group_by("feature")
        .agg(pl.col("fingerprint").last())
        .collect()
    )
    found = dict(zip(latest["feature"].to_list(), latest["fingerprint"].to_list(), strict=True))
    return {wanted[name]: fp for name, fp in found.items() if fp is not None}


def observation_rows(
    observations: Sequence[Observation], project: str, at: datetime
) -> pl.DataFrame:
    """The rows ``observations`` add to the store's observation table."""
    return pl.DataFrame(
        {
            "observed_at": [at] * len(observations),
            "project": [project] * len(observations),
            "feature": [str(o.feature) for o in observations],
            "feature_version": [o.feature_version for o in observations],
            "rows": [o.content.rows for o in observations],
            "data_version": [o.content.data_version for o in observations],
            "fingerprint": [o.content.fingerprint for o in observations],
            "last_written_at": [o.content.last_written_at for o in observations],
            "changed": [o.changed for o in observations],
            "behind_new": [o.behind["new"] for o in observations],
            "behind_stale": [o.behind["stale"] for o in observations],
            "behind_orphaned": [o.behind["orphaned"] for o in observations],
        },
        schema=OBSERVATIONS_SCHEMA,
    )
