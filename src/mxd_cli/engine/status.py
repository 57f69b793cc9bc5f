"""Per-feature status: counts from an increment, plus the reasons work is pending.

Status reads like a run resolves: a feature whose checkpoint still holds is up to date
without reading a row; one whose upstreams moved is resolved on the samples touched since;
root features are compared with what their asset returns now. Causes are counted in the
engine too: which upstream's fields moved under the stale samples, which fields of a
root's samples changed, whether a feature version changed (from the graph snapshots).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.increment import SOURCE, Increment
from mxd_cli.engine.plan import CHANGE, LATEST_ROW_COLUMNS, current_rows, narrowed
from mxd_cli.engine.session import Session
from mxd_cli.engine.sql import alias, col, in_keys, lit, sum_if
from mxd_cli.graph import FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS, row_stamp

Status = Literal["up_to_date", "needs_update", "missing", "error", "root", "skipped"]


@dataclass
class FeatureStatus:
    """What ``mxd status`` reports for one feature."""

    feature: FeatureKey
    status: Status
    stored: int = 0
    rows: int = 0  # the stored samples' physical rows (an expansion's children)
    new: int = 0
    stale: int = 0
    orphaned: int = 0
    unchanged: int = 0
    causes: list[str] = field(default_factory=list)
    source: str | None = None  # the store its rows are read from (None: no store has any)

    @property
    def pending(self) -> bool:
        """Work is pending: the feature (or, for "missing", its upstreams) needs a run."""
        return self.status in ("needs_update", "missing")

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": str(self.feature),
            "status": self.status,
            "stored": self.stored,
            "rows": self.rows,
            "new": self.new,
            "stale": self.stale,
            "orphaned": self.orphaned,
            "unchanged": self.unchanged,
            "causes": list(self.causes),
            "source": self.source,
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def feature_status(
    session: Session,
    node: FeatureNode,
    counts: dict[str, int],
    increment: Increment | None,
    *,
    pending_upstream: list[FeatureKey],
    restricted: bool = False,
) -> FeatureStatus:
    """The status of one feature from its counts (``increment`` None: settled by its
    checkpoint, nothing changed since)."""
    result = FeatureStatus(
        node.key,
        "up_to_date",
        stored=counts["stored"],
        rows=counts.get("rows", counts["stored"]),
        new=counts["new"],
        stale=counts["stale"],
        orphaned=counts["orphaned"],
        unchanged=counts["unchanged"],
    )
    version = session.feature_version(node.key)
    if counts["stored"] == 0 and not restricted:
        older = _older_rows(session, node, version)
        if older == 0:
            result.causes.append("never materialized")
        else:
            result.causes.extend(_version_change(session, node, version))
    elif counts["stored"] == 0 and restricted and not counts["new"]:
        result.causes.append("no samples match the restriction")
    root = node.is_root
    if counts["new"] and counts["stored"]:
        where = "returned by the asset" if root else "available upstream"
        result.causes.append(f"{_plural(counts['new'], 'new sample')} {where}")
    if counts["stale"] and increment is not None:
        result.causes.extend(stale_causes(session, node, increment))
    if counts["orphaned"]:
        gone = "no longer returned by the asset" if root else "no longer produced upstream"
        result.causes.append(f"{_plural(counts['orphaned'], 'stored sample')} {gone}")
    for up in pending_upstream:
        result.causes.append(f"upstream {up} is not up to date")
    pending = bool(counts["new"] or counts["stale"] or counts["orphaned"])
    if counts["stored"] == 0 and (pending or not restricted):
        result.status = "missing"
    elif pending:
        result.status = "needs_update"
    return result


def _older_rows(session: Session, node: FeatureNode, version: str) -> int:
    own = session.locate(node.key)
    if own is None or c.FEATURE_VERSION not in own.schema.names:
        return 0
    older = (
        exp.select(exp.Star())
        .from_(own.ref, copy=False)
        .where(col(c.FEATURE_VERSION).neq(lit(version)), copy=False)
    )
    return session.engine.count(older)


def _version_change(session: Session, node: FeatureNode, feature_version: str) -> list[str]:
    """Why the feature version moved, from the last recorded snapshot of another version."""
    snapshots = (session.holder(node.key) or session.store).scan(FEATURE_VERSIONS)
    previous: dict[str, Any] | None = None
    if snapshots is not None:
        rows = (
            snapshots.filter(
                (pl.col("feature_key") == str(node.key))
                & (pl.col("metaxy_feature_version") != feature_version)
            )
            .sort("recorded_at")
            .collect()
        )
        if rows.height:
            previous = rows.row(-1, named=True)
    if previous is None:
        return [f"feature version changed (now {feature_version}); stored rows are of another"]
    old_fields: dict[str, str] = {}
    try:
        spec = json.loads(previous["feature_spec"])
        old_fields = {f["key"]: str(f["code_version"]) for f in spec.get("fields", [])}
    except (TypeError, ValueError, KeyError):
        pass
    causes = []
    for f in node.spec.fields:
        name = str(f.key)
        if name not in old_fields:
            causes.append(f"field {name} added")
        elif old_fields[name] != f.code_version:
            causes.append(
                f"code version of field {name} changed ({old_fields[name]} -> {f.code_version})"
            )
    for name in sorted(set(old_fields) - {str(f.key) for f in node.spec.fields}):
        causes.append(f"field {name} removed")
    old = previous["metaxy_feature_version"]
    if not causes:
        causes.append(f"upstream definitions changed (feature version {old} -> {feature_version})")
    return causes


def stale_causes(session: Session, node: FeatureNode, increment: Increment) -> list[str]:
    """Attribute stale samples to what changed under them: for a root, the fields whose
    provenance moved; downstream, the upstreams whose fields (those this feature reads)
    changed since the stored row was written (upstream tables are append-only, so the row
    that was current then is still there)."""
    stale_count = increment.counts["stale"]
    if increment.moved_fields is not None:  # (a root's: found by the counts query itself)
        found = increment.moved_fields
        fields = f" (fields: {', '.join(found)})" if found else ""
        return [f"{_plural(stale_count, 'sample')} changed{fields}"]
    rows = increment.compare.to_compute()
    own = session.locate(node.key)
    if rows is None or own is None:
        return [f"{_plural(stale_count, 'sample')} changed"]
    keys = list(increment.key_columns)
    engine = session.engine
    stale = (
        exp.select(*(col(k) for k in keys), col(c.PROVENANCE_BY_FIELD))
        .from_(rows.subquery("__mxd_todo", copy=False))
        .where(col(CHANGE).eq(lit("stale")), copy=False)
    )
    stale = exp.select("*").from_(session.keep(node.key, stale, "__mxd_stale"))
    if node.is_root:
        stored = _stored(session, node, increment, stale, keys)
        moved = _changed_fields(session, node, stale, stored, keys)
        return [f"{_plural(stale_count, 'sample')} changed{moved}"]
    single: dict[int, int] = {}
    if increment.touched is not None:
        # Narrowed: a stale sample that one upstream alone touched since the checkpoint
        # (when every sample was up to date) is that upstream's, with no history read.
        # The others (touched by several sources, or by the feature's own rows) are
        # compared below, then against now.
        touched = exp.select("*").from_(increment.touched.copy())
        by_source = (
            exp.select(col(SOURCE), exp.func("count", exp.Star()))
            .from_(stale.subquery("__mxd_s", copy=False))
            .join(touched.subquery("__mxd_tk", copy=False), using=tuple(keys))
            .where(col(SOURCE) >= 0, copy=False)
            .group_by(col(SOURCE), copy=False)
        )
        single = {int(i): int(n) for i, n in engine.rows(by_source)}
        rest = (
            exp.select(*(col(k) for k in keys), col(c.PROVENANCE_BY_FIELD))
            .from_(stale.subquery("__mxd_s", copy=False))
            .join(touched.subquery("__mxd_tk", copy=False), using=tuple(keys))
            .where(exp.or_(col(SOURCE).is_(exp.null()), col(SOURCE) < 0), copy=False)
        )
        stale = exp.select("*").from_(session.keep(node.key, rest, "__mxd_stale"))
        single = {i: n for i, n in single.items() if _read_fields(session, node, i, keys)}
    compared = (
        {}
        if increment.touched is not None and engine.count(stale) == 0
        else _compared(session, node, increment, stale, keys)
    )
    causes = []
    for i, dep in enumerate(node.spec.deps):
        changed = single.get(i, 0) + compared.get(i, 0)
        if changed:
            causes.append(f"upstream {dep.feature}: {_plural(changed, 'sample')} changed")
    return causes or [f"{_plural(stale_count, 'sample')} changed upstream"]


def _stored(
    session: Session, node: FeatureNode, increment: Increment, stale: exp.Select, keys: list[str]
) -> exp.Select:
    """The stale samples' stored rows (kept): keys, field provenance, when written."""
    own = session.locate(node.key)
    assert own is not None
    mine = narrowed(
        increment.own_rows or own,  # (a narrowed resolve read the touched samples' rows)
        [*keys, *node.spec.id_columns, c.PROVENANCE_BY_FIELD, *LATEST_ROW_COLUMNS],
        in_keys(keys, stale.subquery("__mxd_stale_keys", copy=False)),
        None,
    )
    stored = current_rows(
        mine,
        node.spec.id_columns,
        session.feature_version(node.key),
        [*keys, c.PROVENANCE_BY_FIELD, c.UPDATED_AT],
        name="__mxd_sc",
    )
    return exp.select("*").from_(session.keep(node.key, stored, "__mxd_stored"))


def _compared(
    session: Session, node: FeatureNode, increment: Increment, stale: exp.Select, keys: list[str]
) -> dict[int, int]:
    """Stale samples compared with their upstreams' rows then (when the stored row was
    written) and now: per dep index, how many of them moved under it."""
    engine = session.engine
    stored = _stored(session, node, increment, stale, keys)
    ours = (
        exp.select(*(col(k) for k in keys), alias(exp.func("max", col(c.UPDATED_AT)), "__mxd_ours"))
        .from_(stored.subquery("__mxd_stored", copy=False))
        .group_by(*(col(k) for k in keys), copy=False)
    )
    compared: dict[int, int] = {}
    for index, dep in enumerate(node.spec.deps):
        source = session.locate(dep.feature)
        rename = dict(dep.rename or {})
        up_ids = session.graph[dep.feature].spec.id_columns
        read_fields = _read_fields(session, node, index, keys)
        if source is None or not read_fields:
            continue
        renamed = [alias(col(i), rename.get(i, i)) for i in up_ids]
        theirs = exp.select(*(alias(col(rename.get(i, i)), i) for i in up_ids)).from_(
            stale.subquery("__mxd_sk")
        )
        # The stale samples' upstream rows, every version of them: read once, for what
        # was current when ours were written and what is current now (out of the touched
        # samples' rows when the resolve was narrowed: the stale ones are among them).
        theirs_rows = narrowed(
            increment.upstream_rows.get(dep.feature, source),
            [*up_ids, c.DATA_VERSION_BY_FIELD, *LATEST_ROW_COLUMNS],
            in_keys(list(up_ids), theirs.subquery("__mxd_theirs")),
            lambda q, prefix: session.keep(node.key, q, prefix),
        )
        # Rows ordered as the latest-row pass orders them; after a tombstone the sample
        # had no row (no data version).
        alive = col(c.DELETED_AT).is_(exp.null())
        history = exp.select(
            *renamed,
            alias(row_stamp(), "__mxd_stamp"),
            alias(exp.case().when(alive, col(c.DATA_VERSION_BY_FIELD)), c.DATA_VERSION_BY_FIELD),
        ).from_(theirs_rows.ref.copy())
        order = exp.Order(expressions=[exp.Ordered(this=col("__mxd_stamp"), desc=True)])
        then = (
            exp.select(
                *(col(k, "h") for k in keys),
                alias(col(c.DATA_VERSION_BY_FIELD, "h"), "__mxd_then"),
                alias(
                    exp.Window(
                        this=exp.RowNumber(), partition_by=[col(k, "h") for k in keys], order=order
                    ),
                    "__mxd_n",
                ),
            )
            .from_(history.subquery("h", copy=False))
            .join(ours.subquery("o", copy=False), using=tuple(keys), join_type="inner")
            .where(col("__mxd_stamp", "h") <= col("__mxd_ours", "o"), copy=False)
        )
        latest_then = (
            exp.select("*")
            .from_(then.subquery("__mxd_t", copy=False))
            .where(col("__mxd_n").eq(1), copy=False)
        )
        now = current_rows(
            theirs_rows,
            up_ids,
            session.feature_version(dep.feature),
            [*up_ids, c.DATA_VERSION_BY_FIELD],
            name=f"__mxd_now_{index}",
        )
        now_renamed = exp.select(*renamed, alias(col(c.DATA_VERSION_BY_FIELD), "__mxd_now")).from_(
            now.subquery("__mxd_now_rows", copy=False)
        )
        differs = exp.or_(
            *(
                exp.NullSafeNEQ(
                    this=engine.field(col("__mxd_then"), f),
                    expression=engine.field(col("__mxd_now"), f),
                )
                for f in read_fields
            ),
            copy=False,
        )
        # Per stale sample: an upstream row that came or went under it counts as a change
        # too (an optional dep's sample removed, or added).
        changed = engine.rows(
            exp.select(sum_if(differs))
            .from_(ours.subquery("__mxd_o", copy=False))
            .join(latest_then.subquery("__mxd_lt", copy=False), using=tuple(keys), join_type="left")
            .join(now_renamed.subquery("__mxd_nr", copy=False), using=tuple(keys), join_type="left")
        )[0][0]
        compared[index] = int(changed or 0)
    return compared


def _read_fields(session: Session, node: FeatureNode, index: int, keys: list[str]) -> list[str]:
    """The fields of dep ``index`` that the feature's fields read, where the dep's rows
    are the samples' own (its ids, renamed, are the sample key): the deps a stale sample
    is attributed to. Empty for the others."""
    dep = node.spec.deps[index]
    rename = dict(dep.rename or {})
    ids = [rename.get(i, i) for i in session.graph[dep.feature].spec.id_columns]
    if sorted(ids) != sorted(keys):
        return []
    return sorted(
        {
            p.field.struct_key
            for parents in node.parent_fields.values()
            for p in parents
            if p.feature == dep.feature
        }
    )


def _changed_fields(
    session: Session,
    node: FeatureNode,
    stale: exp.Select,
    stored: exp.Select,
    keys: list[str],
) -> str:
    """The fields whose provenance moved in the stale samples, as " (fields: a, b)"."""
    engine = session.engine
    old = exp.select(*(col(k) for k in keys), alias(col(c.PROVENANCE_BY_FIELD), "__mxd_old")).from_(
        stored.subquery("__mxd_old_rows", copy=False)
    )
    tests = [
        alias(
            sum_if(
                exp.NullSafeNEQ(
                    this=engine.field(col(c.PROVENANCE_BY_FIELD), f.key.struct_key),
                    expression=engine.field(col("__mxd_old"), f.key.struct_key),
                )
            ),
            f"__mxd_f{n}",
        )
        for n, f in enumerate(node.spec.fields)
    ]
    row = engine.rows(
        exp.select(*tests)
        .from_(stale.subquery("__mxd_new", copy=False))
        .join(old.subquery("__mxd_o", copy=False), using=tuple(keys), join_type="inner")
    )[0]
    moved = [str(f.key) for f, n in zip(node.spec.fields, row, strict=True) if n]
    return f" (fields: {', '.join(moved)})" if moved else ""


@dataclass
class Assessment:
    """How far one feature is from done, as status and observe see it."""

    counts: dict[str, int]
    increment: Increment | None  # None: settled by the checkpoint (or nothing to resolve)
    error: str | None = None


ZERO = dict.fromkeys(("new", "stale", "orphaned", "unchanged", "stored"), 0)


def stored_rows_of(session: Session, node: FeatureNode, found: Assessment) -> int:
    """The physical rows of the samples ``found`` counted as stored."""
    from mxd_cli.engine.increment import stored_rows

    if found.increment is not None:
        return found.increment.stored_rows
    rows = stored_rows(session, node)
    return found.counts["stored"] if rows is None else rows


def assess(
    session: Session,
    node: FeatureNode,
    asset: Any,
    checkpoints: Any,
    *,
    project_dir: Any,
    restrictions: Any = None,
) -> Assessment:
    """Resolve one feature read-only: from its checkpoint when nothing it depends on moved,
    on the samples touched since when its upstreams moved, in full otherwise. Root
    features are compared with what their asset returns now (the asset is called)."""
    from mxd_cli.definitions.asset import AssetContext
    from mxd_cli.engine.increment import resolve
    from mxd_cli.engine.restrictions import types_of
    from mxd_cli.engine.roots import stage_root_samples
    from mxd_cli.engine.step import baseline_of, checkpoint_state

    key = node.key
    ctx = AssetContext(key, run_id="status", project_dir=project_dir)
    state = None if restrictions is not None else checkpoint_state(session, node, asset, ctx)
    held = checkpoints.holds(str(key), state)
    if held is not None:
        return Assessment(ZERO | {"stored": held, "unchanged": held}, None)
    saved = checkpoints.get(str(key))
    staged = None
    if node.is_root:
        # Against stores without the feature's table every sample is new: counting them
        # needs their checked ids, not their provenance.
        bare = restrictions is None and session.locate(key) is None
        staged = stage_root_samples(session, node, asset, ctx, ids_only=bare)
    restriction = None
    if restrictions is not None:
        from mxd_cli.engine.increment import _expected

        if staged is not None:
            types = types_of(staged.source.schema)
        else:
            plan = _expected(session, node, None, None)
            types = (
                {}
                if plan is None
                else types_of(
                    session.engine.arrow(
                        exp.select("*")
                        .from_(plan.query.subquery("__mxd_t", copy=False))
                        .limit(0, copy=False)
                    ).schema
                )
            )
        restriction = restrictions.compile(
            node, types, session.locate(key), session.feature_version(key)
        )
    increment = resolve(
        session,
        key,
        samples=None if staged is None else staged.source,
        restrict=restriction,
        baseline=None if state is None else baseline_of(saved, state),
        explain=True,
        payload=False,
    )
    return Assessment(dict(increment.counts), increment)
