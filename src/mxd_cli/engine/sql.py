"""Small builders for the SQL the engine writes (sqlglot expressions, never strings).

Every identifier is quoted, every value a literal. What differs between SQL engines —
hash functions, struct building and access, ordered string aggregation — is asked of the
engine (:class:`~mxd_cli.store.sql_engine.DuckDBEngine` and its peers), so the plans in
:mod:`mxd_cli.engine.plan` are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from mxd_cli.store.base import col, q

__all__ = ["alias", "col", "concat_ws", "false", "in_keys", "lit", "q", "sum_if", "true"]


def lit(value: Any) -> exp.Expr:
    """A literal (strings, numbers, booleans, None)."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def alias(expression: exp.Expr, name: str) -> exp.Expr:
    return exp.alias_(expression, name, quoted=True, copy=False)


def concat_ws(separator: str, parts: Sequence[exp.Expr]) -> exp.Expr:
    """``concat_ws(sep, parts...)`` as the engines define it (no NULL-to-NULL rewriting:
    callers coalesce the parts they need kept)."""
    return exp.Anonymous(this="concat_ws", expressions=[lit(separator), *parts])


def coalesce_text(value: exp.Expr) -> exp.Expr:
    """``value`` as text, NULL as the empty string (Metaxy's separators stay)."""
    return exp.func("coalesce", exp.cast(value, "VARCHAR"), lit(""))


def sum_if(condition: exp.Expr) -> exp.Expr:
    """How many rows satisfy ``condition`` (portable: no FILTER clause)."""
    return exp.func(
        "coalesce",
        exp.Sum(this=exp.case().when(condition, lit(1)).else_(lit(0))),
        lit(0),
    )


def true() -> exp.Expr:
    return exp.true()


def false() -> exp.Expr:
    return exp.false()


def in_keys(keys: Sequence[str], relation: exp.Expr) -> exp.Expr:
    """``(k1, k2) IN (SELECT k1, k2 FROM relation)`` as an EXISTS-free semi-join
    condition (one key: ``k IN (SELECT k ...)``)."""
    subquery = exp.select(*(col(k) for k in keys)).from_(relation, copy=False)
    target: exp.Expr = (
        col(keys[0]) if len(keys) == 1 else exp.Tuple(expressions=[col(k) for k in keys])
    )
    return exp.In(this=target, query=subquery.subquery(copy=False))


def and_all(conditions: Sequence[exp.Expr | None]) -> exp.Expr | None:
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else exp.and_(*present, copy=False)


def subquery(query: exp.Expr, name: str) -> exp.Expr:
    if isinstance(query, exp.Table):
        return query
    assert isinstance(query, (exp.Select, exp.Union, exp.Subquery, exp.Query))
    return query.subquery(name, copy=False)
