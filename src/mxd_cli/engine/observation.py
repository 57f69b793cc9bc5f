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

Everything is counted in the store's engine (one aggregate per feature); a table whose
write mark is the one its last observation recorded is not read at all: its content is
the recorded one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from sqlglot import exp

from mxd_cli.definitions.asset import AssetDefinition
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.plan import current_rows, expands, sample_key
from mxd_cli.engine.session import Session
from mxd_cli.engine.sql import alias, col, concat_ws, lit
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureNode
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
    "write_mark": pl.String(),
}


@dataclass(frozen=True)
class Content:
    """What one feature's table holds: current samples and their versions."""

    rows: int
    data_version: str
    fingerprint: str
    last_written_at: datetime | None
    samples: int | None = None  # distinct sample keys, where they differ from rows

    @property
    def sample_count(self) -> int:
        return self.rows if self.samples is None else self.samples


def content_of(session: Session, node: FeatureNode, where: exp.Expr | None = None) -> Content:
    """Row count, data versions and last write of a feature (one aggregate in the engine
    over its current rows, one over its history); ``where`` narrows both (a partition)."""
    own = session.locate(node.key)
    if own is None:
        return Content(0, EMPTY, _render(0, 0, 0, 0), None)
    engine = session.engine
    names = set(own.schema.names)
    stamps = [col(n) for n in (c.UPDATED_AT, c.DELETED_AT) if n in names]
    last = None
    if stamps:
        latest = exp.func("greatest", *stamps) if len(stamps) > 1 else stamps[0]
        history = exp.select(exp.func("max", latest)).from_(own.ref, copy=False)
        if where is not None:
            history = history.where(where.copy(), copy=False)
        last = engine.rows(history)[0][0]
    ids = list(node.spec.id_columns)
    wanted = [*ids, c.DATA_VERSION, c.CREATED_AT]
    columns = [*wanted, *(n for n in _columns(where) if n not in wanted)]
    rows = current_rows(own, ids, session.feature_version(node.key), columns, where=where)
    null = exp.func("chr", lit(0))
    parts = [
        exp.DPipe(
            this=lit(f"{k}="), expression=exp.func("coalesce", exp.cast(col(k), "VARCHAR"), null)
        )
        for k in ids
    ]
    version = col(c.DATA_VERSION) if c.DATA_VERSION in names else exp.cast(exp.null(), "VARCHAR")
    parts.append(
        exp.DPipe(
            this=lit("dv="), expression=exp.func("coalesce", exp.cast(version, "VARCHAR"), null)
        )
    )
    a, b = engine.fingerprint_calls(concat_ws("|", parts))
    half = lit(1 << 32)
    hashed = exp.select(
        alias(a, "__mxd_a"),
        alias(b, "__mxd_b"),
        alias(
            col(c.CREATED_AT) if c.CREATED_AT in names else exp.cast(exp.null(), "TIMESTAMPTZ"),
            "__mxd_at",
        ),
    ).from_(rows.subquery("__mxd_current", copy=False))
    sums = [
        alias(exp.func("sum", exp.IntDiv(this=col(n), expression=half.copy())), f"{n}_hi")
        for n in ("__mxd_a", "__mxd_b")
    ] + [
        alias(exp.func("sum", exp.Mod(this=col(n), expression=half.copy())), f"{n}_lo")
        for n in ("__mxd_a", "__mxd_b")
    ]
    mean = exp.func("avg", exp.func("epoch_us", col("__mxd_at")))
    count, average, a_hi, b_hi, a_lo, b_lo = engine.rows(
        exp.select(exp.func("count", exp.Star()), mean, *sums).from_(
            hashed.subquery("__mxd_h", copy=False)
        )
    )[0]
    count = int(count)
    data_version = EMPTY
    if count and average is not None:
        micros = round(average)
        data_version = _iso(
            datetime.fromtimestamp(micros // 1_000_000, timezone.utc).replace(
                microsecond=micros % 1_000_000
            )
        )
    fingerprint = _render(int(a_hi or 0), int(a_lo or 0), int(b_hi or 0), int(b_lo or 0))
    return Content(count, data_version, fingerprint, last, samples_of(session, node, where))


def samples_of(session: Session, node: FeatureNode, where: exp.Expr | None = None) -> int | None:
    """Distinct sample keys among an expansion's current rows (None: one row per sample)."""
    own = session.locate(node.key)
    if not expands(node) or own is None:
        return None
    columns = [
        *node.spec.id_columns,
        *(n for n in _columns(where) if n not in node.spec.id_columns),
    ]
    rows = current_rows(
        own, node.spec.id_columns, session.feature_version(node.key), columns, where=where
    )
    return session.engine.count(rows, distinct=sample_key(node))


def _columns(where: exp.Expr | None) -> list[str]:
    return [] if where is None else sorted({column.name for column in where.find_all(exp.Column)})


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
    write_mark: str | None = None
    source: str | None = None  # the store its rows are read from (None: no store has any)

    def with_previous(self, previous: str | None) -> Observation:
        """This observation compared with the previous fingerprint (None: first one)."""
        if previous is None:
            changed = self.content.rows > 0
        else:
            changed = previous != self.content.fingerprint
        return replace(self, changed=changed, previous_fingerprint=previous)

    def to_json(self) -> dict[str, Any]:
        last = self.content.last_written_at
        return {
            "feature": str(self.feature),
            "samples": self.content.sample_count,
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
            "source": self.source,
        }


def observe_feature(
    session: Session,
    node: FeatureNode,
    *,
    asset: AssetDefinition | None,
    checkpoints: Any,
    project_dir: Path,
    previous: Observed | None = None,
) -> Observation:
    """Observe one feature (read-only; an asset failure is reported, not raised). When the
    table's write mark is the one ``previous`` recorded, its content is taken from there."""
    from mxd_cli.engine.status import assess

    holder = session.holder(node.key)
    source = None if holder is None else holder.name
    served = session.served_by(node.key)
    if served is None:
        mark = session.store.write_mark(node.key.parts)
    else:  # (its content is the fallback's: so is the mark it is kept by)
        theirs = served.write_mark(node.key.parts)
        mark = None if theirs is None else f"{served.name}:{theirs}"
    version = session.feature_version(node.key)
    if (
        previous is not None
        and mark is not None
        and previous.write_mark == mark
        and previous.feature_version == version
    ):
        content = replace(previous.content, samples=samples_of(session, node))
    else:
        content = content_of(session, node)
    behind = dict.fromkeys(_BEHIND, 0)
    if not (node.is_root and asset is None):
        try:
            found = assess(session, node, asset, checkpoints, project_dir=project_dir)
        except AssetError as err:
            return Observation(
                node.key, version, content, error=str(err), write_mark=mark, source=source
            )
        behind = {k: found.counts[k] for k in _BEHIND}
    return Observation(node.key, version, content, behind, write_mark=mark, source=source)


@dataclass(frozen=True)
class Observed:
    """A feature's latest recorded observation (what a new one is compared with)."""

    fingerprint: str
    write_mark: str | None
    feature_version: str
    content: Content


def previous_observations(
    store: MetadataStore, project: str, features: Iterable[FeatureKey]
) -> dict[FeatureKey, Observed]:
    """Each feature's latest recorded observation in ``store``."""
    recorded = store.scan(OBSERVATIONS)
    if recorded is None:
        return {}
    wanted = {str(k): k for k in features}
    names = recorded.collect_schema().names()
    mark = pl.col("write_mark") if "write_mark" in names else pl.lit(None, pl.String)
    latest = (
        recorded.filter((pl.col("project") == project) & pl.col("feature").is_in(list(wanted)))
        .with_columns(mark.alias("write_mark"))
        .sort("observed_at")
        .group_by("feature")
        .last()
        .collect()
    )
    found: dict[FeatureKey, Observed] = {}
    for row in latest.iter_rows(named=True):
        if row["fingerprint"] is None:
            continue
        content = Content(
            row["rows"], row["data_version"], row["fingerprint"], row["last_written_at"]
        )
        found[wanted[row["feature"]]] = Observed(
            row["fingerprint"], row["write_mark"], row["feature_version"], content
        )
    return found


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
            "write_mark": [o.write_mark for o in observations],
        },
        schema=OBSERVATIONS_SCHEMA,
    )
