"""The expected samples of a downstream feature: its upstreams' current rows, joined.

Per dependency: the upstream's current rows (at its current feature version), its
``filters``, then ``select`` and ``rename``, then its lineage — identity (1:1), aggregation
(N:1: one row per ``on`` group, data versions hashed over the group) or expansion (1:N:
one row per parent). Required deps are inner-joined, optional ones left-joined; when every
dep is optional they are full-outer-joined with coalesced keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.spec import FeatureDep
from mxd_cli.engine.hashing import hash_expr
from mxd_cli.engine.provenance import (
    combined,
    field_provenance,
    parent_data_version,
    user_columns,
)
from mxd_cli.errors import DefinitionError
from mxd_cli.graph import FeatureGraph, FeatureNode, FieldRef
from mxd_cli.store import columns as c

ReadCurrent = Callable[[FeatureKey], "pl.LazyFrame | None"]

DV_PREFIX = "__mxd_dv_"
JoinStrategy = Literal["inner", "left", "full"]


def sample_key(node: FeatureNode) -> tuple[str, ...]:
    """Columns that identify a sample of the increment: the ids, or an expansion's ``on``."""
    for dep in node.spec.deps:
        if dep.lineage.kind == "1:N":
            return tuple(dep.lineage.on or ())
    return node.spec.id_columns


def _join_key(node: FeatureNode, dep: FeatureDep) -> list[str]:
    return list(dep.lineage.on or ()) if dep.lineage.kind != "1:1" else list(node.spec.id_columns)


@dataclass(frozen=True)
class HashSettings:
    algorithm: str
    length: int


def _prepare(
    node: FeatureNode,
    graph: FeatureGraph,
    index: int,
    dep: FeatureDep,
    frame: pl.LazyFrame,
    hashing: HashSettings,
) -> pl.LazyFrame:
    up = graph[dep.feature]
    dv = f"{DV_PREFIX}{index}"
    if dep.filters:
        from mxd_cli.engine.filters import parse_filters

        flt = parse_filters(list(dep.filters), frame.collect_schema())
        if flt is not None:
            frame = frame.filter(flt.to_polars())
    rename = dict(dep.rename or {})
    names = frame.collect_schema().names()
    users = user_columns(names, up.spec.id_columns)
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
        users = [u for u in users if u in wanted]
    frame = frame.select(
        *up.spec.id_columns, *users, pl.col(c.DATA_VERSION_BY_FIELD).alias(dv)
    ).rename(rename, strict=False)
    if dep.lineage.kind == "N:1":
        # One row per group; per upstream field, the group's data versions ordered by the
        # upstream ids, joined with "|" and hashed (recipe 13).
        on = list(dep.lineage.on or ())
        order = [rename.get(i, i) for i in up.spec.id_columns]
        keys = [f.key.struct_key for f in up.spec.fields]
        values = [pl.col(dv).struct.field(k).sort_by(order).str.join("|").alias(k) for k in keys]
        frame = (
            frame.group_by(on)
            .agg(values)
            .select(
                *on,
                pl.struct(
                    [hash_expr(pl.col(k), hashing.algorithm, hashing.length).alias(k) for k in keys]
                ).alias(dv),
            )
        )
    return frame


def expected_samples(
    node: FeatureNode,
    graph: FeatureGraph,
    read: ReadCurrent,
    algorithm: str,
    length: int,
) -> pl.LazyFrame | None:
    """Expected rows with upstream columns and provenance; None when nothing can be expected."""
    deps = list(enumerate(node.spec.deps))
    frames: dict[int, pl.LazyFrame] = {}
    for i, dep in deps:
        frame = read(dep.feature)
        if frame is None:
            if not dep.optional:
                return None
            continue
        frames[i] = _prepare(node, graph, i, dep, frame, HashSettings(algorithm, length))
    if not frames:
        return None
    all_optional = all(dep.optional for _, dep in deps)
    order = [i for i, dep in deps if i in frames and (all_optional or not dep.optional)]
    order += [i for i, dep in deps if i in frames and i not in order]
    result = frames[order[0]]
    for i in order[1:]:
        dep = node.spec.deps[i]
        key = _join_key(node, dep)
        _check_collisions(node, result, frames[i], key, dep)
        how: JoinStrategy = "full" if all_optional else ("left" if dep.optional else "inner")
        result = result.join(frames[i], on=key, how=how, coalesce=True, nulls_equal=False)
    parents: dict[FieldRef, pl.Expr] = {}
    for i, dep in deps:
        for field in graph[dep.feature].spec.fields:
            ref = FieldRef(dep.feature, field.key)
            parents[ref] = (
                parent_data_version(f"{DV_PREFIX}{i}", field.key) if i in frames else pl.lit(None)
            )
    dv_columns = [f"{DV_PREFIX}{i}" for i in frames]
    result = result.with_columns(field_provenance(node, parents, algorithm, length)).drop(
        dv_columns
    )
    result = result.with_columns(
        combined(c.PROVENANCE_BY_FIELD, node, algorithm, length).alias(c.PROVENANCE)
    )
    return result.with_columns(
        pl.col(c.PROVENANCE_BY_FIELD).alias(c.DATA_VERSION_BY_FIELD),
        pl.col(c.PROVENANCE).alias(c.DATA_VERSION),
    )


def _check_collisions(
    node: FeatureNode, left: pl.LazyFrame, right: pl.LazyFrame, key: list[str], dep: FeatureDep
) -> None:
    shared = (set(left.collect_schema().names()) & set(right.collect_schema().names())) - set(key)
    if shared:
        names = ", ".join(sorted(shared))
        raise DefinitionError(
            f"feature {node.key}: column(s) {names} come from {dep.feature} and another dep",
            hint="rename them with FeatureDep(rename={...}) or narrow with select=[...]",
            location=str(node.origin),
        )
