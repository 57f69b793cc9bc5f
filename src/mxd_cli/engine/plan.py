"""The increment of a feature as SQL: expected provenance, current rows, and the compare.

Expected samples of a downstream feature, per dependency: the upstream's current rows at
its current feature version, renamed, filtered (after the rename, as Metaxy does), then
``select``-ed; then its lineage — identity (1:1), aggregation (N:1: one row per ``on``
group, each field's data versions of the group ordered by the upstream ids, joined with
``|`` and hashed: recipe 13) or expansion (1:N: one row per parent). Required deps are
inner-joined, optional ones left-joined; all-optional deps are full-outer-joined with
coalesced keys. Then per field ``T(h("f|code_version|parent|dv(parent)|..."))`` (recipe 9)
and the sample's ``T(h(join("|", field hashes by struct key)))`` (recipe 10).

The compare splits expected samples against the feature's current rows by sample key:
``new`` (not stored), ``stale`` (stored with another provenance), ``orphaned`` (stored,
no longer expected) and unchanged. Everything here is a query; the engine runs it where
the tables live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
from sqlglot import exp

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.spec import FeatureDep
from mxd_cli.engine.provenance import sorted_struct_keys, user_columns
from mxd_cli.engine.sql import (
    alias,
    and_all,
    coalesce_text,
    col,
    concat_ws,
    in_keys,
    lit,
    sum_if,
)
from mxd_cli.errors import DefinitionError, FilterError, did_you_mean
from mxd_cli.graph import FeatureGraph, FeatureNode, FieldRef
from mxd_cli.store import columns as c
from mxd_cli.store.base import latest_rows
from mxd_cli.store.sql_engine import SqlEngine

DV_PREFIX = "__mxd_dv_"
HASH_PREFIX = "__mxd_h_"
_E, _C, _PE, _PC = "__mxd_e", "__mxd_c", "__mxd_pe", "__mxd_pc"
_FE, _FC = "__mxd_fe", "__mxd_fc"  # provenance by field, expected and current
CHANGE = "__mxd_change"  # 'new' or 'stale' on the rows to compute
ROW_ID = "rowid"  # DuckDB's row address of a base table
#: What :func:`current_rows` reads besides the columns it keeps (a narrowed copy of a
#: table must hold them for the latest-row pass).
LATEST_ROW_COLUMNS = (c.FEATURE_VERSION, c.UPDATED_AT, c.DELETED_AT)


@dataclass(frozen=True)
class HashSettings:
    """How sample hashes are computed: Metaxy's algorithm name and truncation length."""

    algorithm: str
    length: int


@dataclass(frozen=True)
class TableSource:
    """Where the engine finds a feature's table (target store or a fallback)."""

    ref: exp.Expr  # a table, or a subquery of one
    schema: pa.Schema
    store: str
    row_ids: bool = False  # ``ref`` is a base table with a ``rowid`` (see narrowed)


Locate = Callable[[FeatureKey], "TableSource | None"]
#: Materializes a query in a temporary table (kept for the feature being resolved).
Keep = Callable[[exp.Expr, str], exp.Table]


def narrowed(
    source: TableSource, columns: Sequence[str], where: exp.Expr, keep: Keep | None
) -> TableSource:
    """``source`` restricted to the rows ``where`` selects (``columns`` of them), in a
    temporary table when ``keep`` is given: a few rows out of a large table, read once.

    Where the table's rows have ids, they are found first by a scan of the columns
    ``where`` reads, and only those rows' other columns are read (a scan of every column
    of a million rows costs 2-3x more than the key scan and the fetch together).
    """
    present = [n for n in dict.fromkeys(columns) if n in source.schema.names]
    if source.row_ids and ROW_ID not in source.schema.names:
        found = exp.select(col(ROW_ID)).from_(source.ref.copy()).where(where)
        where = exp.In(this=col(ROW_ID), query=exp.Subquery(this=found))
    query = exp.select(*(col(n) for n in present)).from_(source.ref).where(where)
    if keep is None:
        return TableSource(query.subquery("__mxd_narrow"), source.schema, source.store)
    table = keep(query, "__mxd_narrow")
    fields = [source.schema.field(n) for n in present]
    return TableSource(table, pa.schema(fields), source.store)


def sample_key(node: FeatureNode) -> tuple[str, ...]:
    """Columns that identify a sample of the increment: the ids, or an expansion's ``on``."""
    for dep in node.spec.deps:
        if dep.lineage.kind == "1:N":
            return tuple(dep.lineage.on or ())
    return node.spec.id_columns


def expands(node: FeatureNode) -> bool:
    """Whether the feature is an expansion (1:N): its asset decides how many children a
    parent has, so a sample (the parent) may hold several physical rows."""
    return any(dep.lineage.kind == "1:N" for dep in node.spec.deps)


def join_key(node: FeatureNode, dep: FeatureDep) -> list[str]:
    return list(dep.lineage.on or ()) if dep.lineage.kind != "1:1" else list(node.spec.id_columns)


def current_rows(
    source: TableSource,
    id_columns: Sequence[str],
    feature_version: str,
    columns: Sequence[str],
    *,
    where: exp.Expr | None = None,
    include_deleted: bool = False,
    name: str = "__mxd",
) -> exp.Select:
    """The current rows of a feature at ``feature_version`` (see
    :func:`~mxd_cli.store.base.latest_rows`), only ``columns`` kept."""
    version: exp.Expr = col(c.FEATURE_VERSION).eq(lit(feature_version))
    present = set(source.schema.names)
    if c.FEATURE_VERSION not in present:
        version = exp.false()
    keep = [n for n in columns if n in present]
    return latest_rows(
        source.ref,
        id_columns,
        keep,
        where=and_all([version, where]),
        include_deleted=include_deleted,
        name=name,
    )


@dataclass
class ExpectedPlan:
    """Expected rows of a feature, and the columns they carry."""

    query: exp.Select
    columns: list[str]
    deps: list[int] = field(default_factory=list)  # indexes of the deps that took part
    #: Per aggregation dep: its rows before grouping (ids, columns), for the asset.
    members: dict[int, exp.Select] = field(default_factory=dict)
    #: Narrowed to touched samples: per upstream, every stored row (all versions) of them.
    upstream_rows: dict[FeatureKey, TableSource] = field(default_factory=dict)


def _dep_rows(
    node: FeatureNode,
    graph: FeatureGraph,
    index: int,
    dep: FeatureDep,
    source: TableSource,
    feature_version: str,
    engine: SqlEngine,
    hashing: HashSettings,
    touched: exp.Expr | None,
    keep: Keep | None = None,
    narrowed_into: dict[FeatureKey, TableSource] | None = None,
    payload: bool = True,
    recent: TableSource | None = None,
) -> tuple[exp.Select, list[str], list[str]]:
    """One dependency's rows, ready to join: renamed ids and user columns and its data
    versions (``__mxd_dv_<i>``); grouped for aggregation lineage. Also the names its rows
    would carry with every user column (what the caller checks for collisions).

    Without ``payload`` only the user columns that the join key and the dep's filters
    name are read: provenance needs the data versions alone, and in a large table the
    other columns cost most of a read (no asset will see these rows). ``recent``: the
    upstream's rows written since its mark, which hold every touched sample's current row
    (read instead of the table)."""
    up = graph[dep.feature]
    dv = f"{DV_PREFIX}{index}"
    names = list(source.schema.names)
    users = user_columns(names, up.spec.id_columns)
    rename = dict(dep.rename or {})
    renamed = {n: rename.get(n, n) for n in [*up.spec.id_columns, *users]}
    if dep.select is not None:
        inverse = {new: old for old, new in rename.items()}
        wanted = {inverse.get(s, s) for s in dep.select}
        unknown = sorted(wanted - set(users))
        if unknown:
            raise DefinitionError(
                f"feature {node.key}: select names unknown column(s) {', '.join(unknown)} "
                f"of {dep.feature}",
                hint=f"{dep.feature} has {', '.join(users) or 'no user columns'}",
                location=str(node.origin),
            )
        chosen = [u for u in users if u in wanted]
    else:
        chosen = users
    key = join_key(node, dep)
    filtered = _dep_filter(node, dep, renamed, source.schema) if dep.filters else None
    # System columns a filter names are the upstream's own (no rename): read and kept
    # beside the renamed columns, for the filter alone.
    filtered_names = {n.name for n in (filtered.find_all(exp.Column) if filtered else ())}
    system = [n for n in c.SYSTEM_COLUMNS if n in filtered_names and n in names]
    every = [renamed[i] for i in up.spec.id_columns] + [renamed[u] for u in chosen]
    if not payload:
        named = set(key) | filtered_names
        users = [u for u in users if renamed[u] in named]
        chosen = [u for u in chosen if u in users]
        renamed = {n: renamed[n] for n in [*up.spec.id_columns, *users]}
    if touched is not None and recent is not None:
        source = recent
    elif touched is not None:
        # Only the touched samples' rows, taken out once before the latest-row pass (so the
        # pass runs over them, not the whole table): the join key in the upstream's names.
        inverse = {new: old for old, new in renamed.items()}
        theirs = exp.select(*(alias(col(k), inverse.get(k, k)) for k in key)).from_(touched.copy())
        needed = [
            *up.spec.id_columns,
            *users,
            c.DATA_VERSION_BY_FIELD,
            *LATEST_ROW_COLUMNS,
            *system,
        ]
        source = narrowed(
            source,
            needed,
            in_keys([inverse.get(k, k) for k in key], theirs.subquery(f"__mxd_t{index}")),
            keep,
        )
        if narrowed_into is not None and dep.lineage.kind == "1:1":  # (every row of the ids)
            narrowed_into.setdefault(dep.feature, source)
    upstream = current_rows(
        source,
        up.spec.id_columns,
        feature_version,
        [*up.spec.id_columns, *users, c.DATA_VERSION_BY_FIELD, *system],
        name=f"__mxd_u{index}",
    )
    projected = [alias(col(old), new) for old, new in renamed.items()]
    projected.append(alias(col(c.DATA_VERSION_BY_FIELD), dv))
    projected += [col(n) for n in system]
    inner = exp.select(*projected).from_(upstream.subquery(f"__mxd_up{index}", copy=False))
    ids = [renamed[i] for i in up.spec.id_columns]
    kept = [*ids, *(renamed[u] for u in chosen), dv]
    rows = exp.select(*(col(n) for n in kept)).from_(inner.subquery(f"__mxd_in{index}", copy=False))
    if filtered is not None:
        rows = rows.where(filtered, copy=False)
    if dep.lineage.kind != "N:1":
        return rows, kept, [*every, dv]
    # One row per group; per upstream field, the group's data versions ordered by the
    # upstream ids, joined with "|" and hashed (recipe 13).
    on = list(dep.lineage.on or ())
    keys = [f.key.struct_key for f in up.spec.fields]
    per_field = []
    for k in keys:
        joined = engine.ordered_join(engine.field(col(dv), k), [col(i) for i in ids], "|")
        digest = engine.hash_call(hashing.algorithm, exp.func("coalesce", joined, lit("")))
        per_field.append((k, engine.prefix(digest, hashing.length)))
    grouped = (
        exp.select(*(col(o) for o in on), alias(engine.struct(per_field), dv))
        .from_(rows.subquery(f"__mxd_rows{index}", copy=False))
        .group_by(*(col(o) for o in on), copy=False)
    )
    grouped.meta["members"] = rows
    return grouped, [*on, dv], [*on, dv]


def _dep_filter(
    node: FeatureNode, dep: FeatureDep, renamed: dict[str, str], schema: pa.Schema
) -> exp.Expr:
    """A dep's ``filters``, over the upstream's columns as renamed (Metaxy filters after
    the rename); a filter naming a column by its old name is told the new one."""
    from mxd_cli.engine.filters import parse_filters

    types = c.polars_types(schema)
    columns = {renamed.get(n, n): t for n, t in types.items()}
    for system in c.SYSTEM_COLUMNS:
        if system in types:
            columns[system] = types[system]
    try:
        parsed = parse_filters(list(dep.filters or ()), columns)
    except FilterError as err:
        moved = {old: new for old, new in renamed.items() if old != new}
        named = next((old for old in moved if f"'{old}'" in err.message), None)
        hint = err.hint
        if named is not None:
            hint = (
                f"{named!r} is renamed to {moved[named]!r} by this dep: filters name the new name"
            )
        raise FilterError(
            f"feature {node.key}: filter of its dep on {dep.feature}: {err.message}",
            hint=hint or did_you_mean(err.message, list(columns)),
        ) from None
    assert parsed is not None
    return parsed.to_sqlglot()


def expected_rows(
    node: FeatureNode,
    graph: FeatureGraph,
    locate: Locate,
    feature_version: Callable[[FeatureKey], str],
    engine: SqlEngine,
    hashing: HashSettings,
    *,
    touched: exp.Expr | None = None,
    keep: Keep | None = None,
    payload: bool = True,
    recent: Mapping[int, TableSource] | None = None,
) -> ExpectedPlan | None:
    """Expected rows of a downstream feature with upstream columns and provenance; None
    when nothing can be expected (a required upstream has no table). Without ``payload``
    the rows carry only the user columns that keys and dep filters need (see
    :func:`_dep_rows`): enough for counts and causes, not for an asset."""
    deps = list(enumerate(node.spec.deps))
    prepared: dict[int, tuple[exp.Select, list[str], list[str]]] = {}
    upstream_rows: dict[FeatureKey, TableSource] = {}
    for i, dep in deps:
        source = locate(dep.feature)
        if source is None:
            if not dep.optional:
                return None
            continue
        prepared[i] = _dep_rows(
            node,
            graph,
            i,
            dep,
            source,
            feature_version(dep.feature),
            engine,
            hashing,
            touched,
            keep,
            upstream_rows,
            payload,
            None
            if recent is None or i not in recent
            else replace(recent[i], ref=recent[i].ref.copy()),
        )
    if not prepared:
        return None
    all_optional = all(dep.optional for _, dep in deps)
    order = [i for i, dep in deps if i in prepared and (all_optional or not dep.optional)]
    order += [i for i, dep in deps if i in prepared and i not in order]
    first = order[0]
    query = exp.select("*").from_(prepared[first][0].subquery(f"__mxd_dep{first}", copy=False))
    columns = list(prepared[first][1])
    every = list(prepared[first][2])  # (with payload: the same names; collisions use these)
    for i in order[1:]:
        dep = node.spec.deps[i]
        key = join_key(node, dep)
        theirs = prepared[i][1]
        shared = (set(every) & set(prepared[i][2])) - set(key)
        if shared:
            names = ", ".join(sorted(shared))
            raise DefinitionError(
                f"feature {node.key}: column(s) {names} come from {dep.feature} and another dep",
                hint="rename them with FeatureDep(rename={...}) or narrow with select=[...]",
                location=str(node.origin),
            )
        how = "full" if all_optional else ("left" if dep.optional else "inner")
        query = query.join(
            prepared[i][0].subquery(f"__mxd_dep{i}", copy=False), using=tuple(key), join_type=how
        )
        columns += [n for n in theirs if n not in columns]
        every += [n for n in prepared[i][2] if n not in every]
    # Field hashes (recipe 9), then the struct and the sample's provenance (recipe 10).
    parents: dict[FieldRef, exp.Expr] = {}
    for i, dep in deps:
        for f in graph[dep.feature].spec.fields:
            ref = FieldRef(dep.feature, f.key)
            dv = f"{DV_PREFIX}{i}"
            parents[ref] = engine.field(col(dv), f.key.struct_key) if i in prepared else lit(None)
    hashed = []
    for f in node.spec.fields:
        parts = [lit(str(f.key)), lit(f.code_version)]
        for parent in node.parent_fields[f.key]:
            parts += [lit(str(parent)), coalesce_text(parents[parent])]
        digest = engine.hash_call(hashing.algorithm, concat_ws("|", parts))
        hashed.append(alias(engine.prefix(digest, hashing.length), HASH_PREFIX + f.key.struct_key))
    users = [n for n in columns if not n.startswith(DV_PREFIX)]
    layer = exp.select(*(col(n) for n in users), *hashed).from_(
        query.subquery("__mxd_joined", copy=False)
    )
    by_field = engine.struct(
        [(f.key.struct_key, col(HASH_PREFIX + f.key.struct_key)) for f in node.spec.fields]
    )
    combined = engine.hash_call(
        hashing.algorithm,
        concat_ws("|", [coalesce_text(col(HASH_PREFIX + k)) for k in sorted_struct_keys(node)]),
    )
    provenance = exp.select(
        *(col(n) for n in users),
        alias(by_field, c.PROVENANCE_BY_FIELD),
        alias(engine.prefix(combined, hashing.length), c.PROVENANCE),
    ).from_(layer.subquery("__mxd_hashed", copy=False))
    final = exp.select(
        *(col(n) for n in users),
        col(c.PROVENANCE_BY_FIELD),
        col(c.PROVENANCE),
        alias(col(c.PROVENANCE_BY_FIELD), c.DATA_VERSION_BY_FIELD),
        alias(col(c.PROVENANCE), c.DATA_VERSION),
    ).from_(provenance.subquery("__mxd_provenance", copy=False))
    system = [c.PROVENANCE_BY_FIELD, c.PROVENANCE, c.DATA_VERSION_BY_FIELD, c.DATA_VERSION]
    members: dict[int, exp.Select] = {}
    for i in prepared:
        rows = prepared[i][0].meta.get("members")
        if rows is not None:
            dv = f"{DV_PREFIX}{i}"
            kept = [n for n in rows.named_selects if n != dv]
            members[i] = exp.select(*(col(n) for n in kept)).from_(rows.subquery(f"__mxd_m{i}"))
    return ExpectedPlan(final, [*users, *system], sorted(prepared), members, upstream_rows)


# ---- the compare ----------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """Expected and current rows of one feature, by sample key, ready to split."""

    key: tuple[str, ...]
    expected: exp.Select | None  # expected rows (all columns)
    current: exp.Select | None  # current samples: key columns and provenance
    #: Current rows, every column (for tombstones), of the samples a condition selects
    #: (None: of every sample).
    own: Callable[[exp.Expr | None], exp.Select] | None
    full: bool = False  # every stored sample counts as stale
    #: Fields whose provenance the counts also compare among stale samples (both sides
    #: then carry provenance by field), and how the engine reads a struct's field.
    fields: tuple[str, ...] = ()
    field_of: Callable[[exp.Expr, str], exp.Expr] | None = None

    def _sides(self) -> tuple[exp.Select, exp.Select]:
        assert self.expected is not None and self.current is not None
        keys = [col(k) for k in self.key]
        by_field = [alias(col(c.PROVENANCE_BY_FIELD), _FE)] if self.fields else []
        expected = exp.select(
            *keys, alias(col(c.PROVENANCE), _PE), alias(lit(1), _E), *by_field
        ).from_(self.expected.subquery("__mxd_exp", copy=False))
        by_field = [alias(col(c.PROVENANCE_BY_FIELD), _FC)] if self.fields else []
        current = exp.select(
            *(k.copy() for k in keys), alias(col(c.PROVENANCE), _PC), alias(lit(1), _C), *by_field
        ).from_(self.current.subquery("__mxd_cur", copy=False))
        return expected, current

    def _differs(self) -> exp.Expr:
        if self.full:
            return exp.true()
        return exp.NullSafeNEQ(this=col(_PE), expression=col(_PC))

    def counts(self) -> exp.Select:
        """One row: new, stale, orphaned, unchanged, stored (distinct samples); then, per
        field of ``fields`` (when both sides exist), the stale samples where it moved."""
        zero = [alias(lit(0), n) for n in ("new", "stale", "orphaned", "unchanged", "stored")]
        if self.current is None:
            if self.expected is None:
                return exp.select(*zero)
            zero[0] = alias(exp.func("count", exp.Star()), "new")
            return exp.select(*zero).from_(self.expected.subquery("__mxd_exp", copy=False))
        if self.expected is None:
            zero[2] = alias(exp.func("count", exp.Star()), "orphaned")
            zero[4] = alias(exp.func("count", exp.Star()), "stored")
            return exp.select(*zero).from_(self.current.subquery("__mxd_cur", copy=False))
        expected, current = self._sides()
        e, c_ = col(_E).is_(exp.null()).not_(), col(_C).is_(exp.null()).not_()
        both = exp.and_(e.copy(), c_.copy(), copy=False)
        return (
            exp.select(
                alias(sum_if(exp.and_(e.copy(), col(_C).is_(exp.null()), copy=False)), "new"),
                alias(sum_if(exp.and_(both.copy(), self._differs(), copy=False)), "stale"),
                alias(sum_if(exp.and_(c_.copy(), col(_E).is_(exp.null()), copy=False)), "orphaned"),
                alias(
                    sum_if(exp.and_(both.copy(), exp.not_(self._differs(), copy=False))),
                    "unchanged",
                ),
                alias(sum_if(c_.copy()), "stored"),
                *self._moved(both),
            )
            .from_(expected.subquery("__mxd_e_side", copy=False))
            .join(
                current.subquery("__mxd_c_side", copy=False),
                using=tuple(self.key),
                join_type="full",
                copy=False,
            )
        )

    def _moved(self, both: exp.Expr) -> list[exp.Expr]:
        if not self.fields:
            return []
        assert self.field_of is not None
        return [
            alias(
                sum_if(
                    exp.and_(
                        both.copy(),
                        self._differs(),
                        exp.NullSafeNEQ(
                            this=self.field_of(col(_FE), name),
                            expression=self.field_of(col(_FC), name),
                        ),
                        copy=False,
                    )
                ),
                f"__mxd_moved{n}",
            )
            for n, name in enumerate(self.fields)
        ]

    def to_compute(self, after: Sequence[object] | None = None) -> exp.Select | None:
        """New and stale rows (every expected column, plus ``__mxd_change``), ordered by
        sample key; ``after``: only keys greater than this one (resuming a stream)."""
        if self.expected is None:
            return None
        keys = list(self.key)
        rows = self.expected.subquery("__mxd_x", copy=False)
        if self.current is None:
            query = exp.select("*", alias(lit("new"), CHANGE)).from_(rows, copy=False)
        else:
            current = exp.select(
                *(col(k) for k in keys), alias(col(c.PROVENANCE), _PC), alias(lit(1), _C)
            ).from_(self.current.subquery("__mxd_cur", copy=False))
            change = exp.case().when(col(_C).is_(exp.null()), lit("new")).else_(lit("stale"))
            differs = (
                exp.true()
                if self.full
                else exp.NullSafeNEQ(this=col(c.PROVENANCE, "__mxd_x"), expression=col(_PC))
            )
            query = (
                exp.select(
                    exp.Column(this=exp.Star(), table=exp.to_identifier("__mxd_x", quoted=True)),
                    alias(change, CHANGE),
                )
                .from_(rows, copy=False)
                .join(current.subquery("__mxd_c", copy=False), using=tuple(keys), join_type="left")
                .where(exp.or_(col(_C).is_(exp.null()), differs, copy=False))
            )
        if after is not None:
            query = query.where(_after(keys, after), copy=False)
        return query.order_by(*(col(k) for k in keys), copy=False)

    def orphans(self) -> exp.Select | None:
        """Every current row (all columns) of the samples no longer expected."""
        if self.current is None or self.own is None:
            return None
        if self.expected is None:
            return self.own(None)
        keys = list(self.key)
        expected, current = self._sides()
        gone = (
            exp.select(*(col(k) for k in keys))
            .from_(current.subquery("__mxd_c_side", copy=False))
            .join(
                expected.subquery("__mxd_e_side", copy=False),
                using=tuple(keys),
                join_type="left anti",
            )
        )
        return self.own(in_keys(keys, gone.subquery("__mxd_gone", copy=False)))


def _after(keys: Sequence[str], values: Sequence[object]) -> exp.Expr:
    """``keys > values`` lexicographically."""
    terms: list[exp.Expr] = []
    for n in range(len(keys)):
        equal: list[exp.Expr | None] = [col(keys[i]).eq(lit(values[i])) for i in range(n)]
        term = and_all([*equal, col(keys[n]) > lit(values[n])])
        assert term is not None
        terms.append(term)
    return exp.or_(*terms, copy=False) if len(terms) > 1 else terms[0]
