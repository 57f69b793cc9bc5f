"""Filters: the one compiler from user-written SQL WHERE text to Polars and SQL predicates.

Filter text (``--filter``, ``FeatureDep(filters=[...])``) is never pasted into SQL. It is
tokenized and parsed by sqlglot (DuckDB dialect), every node is checked against an
allow-list, and the checked AST is compiled to a Polars expression that selects the rows
DuckDB selects for ``WHERE <to_sql()>``. SQL is always rendered from the AST.

Known differences: where DuckDB raises (integer overflow, integer ``% 0``, a failed CAST)
Polars wraps or yields NULL; upper/lower/ILIKE use full Unicode case mapping in Polars
(``upper('ß')`` is 'SS', DuckDB says 'ẞ'); parts of aware timestamps are read in UTC, as
mxd runs DuckDB. Without dtypes nothing is coerced and casts follow Polars.

    >>> f = parse_filter("score >= 0.5 AND kind = 'x'", {"score": pl.Float64, "kind": pl.String})
    >>> f.to_sql()
    '"score" >= CAST(0.5 AS DOUBLE) AND "kind" = \\'x\\''
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

import polars as pl
from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from mxd_cli.errors import FilterError, did_you_mean

__all__ = ["MAX_FILTER_CHARS", "Filter", "parse_filter", "parse_filters"]

MAX_FILTER_CHARS = 10_000
MAX_NESTING = 100  # bounds the recursion of the compiler and of sqlglot's generator

ColumnSpec: TypeAlias = Collection[str] | Mapping[str, pl.DataType | type[pl.DataType]]


@dataclass(frozen=True)
class Filter:
    """A checked filter: its text, its AST (a condition) and the columns it reads.

    >>> parse_filter("x IN (1, 2)", ["x"]).to_sql()
    '"x" IN (1, 2)'
    """

    text: str
    ast: exp.Expr
    columns: frozenset[str]
    _polars: pl.Expr = field(repr=False, compare=False)

    def to_polars(self) -> pl.Expr:
        """A boolean expression for ``filter``: the rows the SQL predicate keeps."""
        return self._polars

    def to_sql(self, dialect: str = "duckdb") -> str:
        """The predicate rendered from the checked AST, every identifier quoted."""
        return self.ast.sql(dialect=dialect, identify=True)

    def to_sqlglot(self) -> exp.Expr:
        """A copy of the AST, for sqlglot builders such as ``exp.delete(table, where=...)``."""
        return self.ast.copy()


def parse_filter(text: str, columns: ColumnSpec | None = None) -> Filter:
    """Parse and check one filter against ``columns`` (names, or names to dtypes).

    ``None`` skips the column check. With dtypes, type mismatches are rejected here and
    text literals compared with dates or timestamps become typed literals.
    """
    return _Compiler(text, "filter", columns).run()


def parse_filters(texts: Sequence[str], columns: ColumnSpec | None = None) -> Filter | None:
    """AND several filters (repeated ``--filter``); None when there are none."""
    if isinstance(texts, str):  # a lone string is a Sequence[str] too
        texts = [texts]
    labels = [f"filter {i}" if len(texts) > 1 else "filter" for i in range(1, len(texts) + 1)]
    parts = [_Compiler(t, label, columns).run() for t, label in zip(texts, labels, strict=True)]
    if len(parts) <= 1:
        return parts[0] if parts else None
    return Filter(
        text=" AND ".join(f"({p.text})" for p in parts),
        ast=exp.and_(*(p.to_sqlglot() for p in parts), copy=False),
        columns=frozenset().union(*(p.columns for p in parts)),
        _polars=pl.all_horizontal(*(p.to_polars() for p in parts)),
    )


# Value kinds the checker reasons about; "any" is unknown (no dtypes given).
_KIND_NAMES = {"int": "a number", "float": "a number", "str": "text", "bool": "a boolean"}
_KIND_NAMES |= {"date": "a date", "ts": "a timestamp", "tstz": "a timestamp with time zone"}
_FAMILY = {"int": "num", "float": "num", "date": "time", "ts": "time"}
_NUMERIC = ("int", "float", "any", "null")
_TEXT = ("str", "any", "null")
_TEMPORAL = {"date": "DATE", "ts": "TIMESTAMP", "tstz": "TIMESTAMPTZ"}

_T = exp.DataType.Type
# CAST targets: canonical SQL name (so to_sql re-parses to the same AST), kind, dtype.
# FLOAT becomes DOUBLE: Polars literals are Float64, a 32-bit cast would compare otherwise.
_CAST_TARGETS: dict[Any, tuple[str, str, pl.DataType]] = {
    _T.INT: ("INT", "int", pl.Int32()),
    _T.BIGINT: ("BIGINT", "int", pl.Int64()),
    **dict.fromkeys([_T.DOUBLE, _T.FLOAT], ("DOUBLE", "float", pl.Float64())),
    **dict.fromkeys([_T.VARCHAR, _T.TEXT], ("TEXT", "str", pl.String())),
    _T.BOOLEAN: ("BOOLEAN", "bool", pl.Boolean()),
    _T.DATE: ("DATE", "date", pl.Date()),
    **dict.fromkeys([_T.TIMESTAMP, _T.TIMESTAMPNTZ], ("TIMESTAMP", "ts", pl.Datetime("us"))),
    _T.TIMESTAMPTZ: ("TIMESTAMPTZ", "tstz", pl.Datetime("us", "UTC")),
}
# Casts whose results agree in DuckDB and Polars (float or timestamp -> text formats
# differ, Polars cannot read text as boolean, ...); others are rejected.
_CASTS = {
    "int": {"int", "float", "str", "bool"},
    "float": {"int", "float"},
    "str": {"float", "str"},  # DuckDB reads ' 1', '2.5', '1e3' as INT and more as DATE
    "bool": {"int", "float", "str", "bool"},
    "date": {"date", "ts", "str"},
    "ts": {"date", "ts"},
    "tstz": {"tstz"},
}


def _trunc_mod(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    # DuckDB's % takes the dividend's sign (C fmod); Polars' takes the divisor's (floor).
    r = a % b
    return pl.when((r != 0) & ((r < 0) != (a < 0))).then(r - b).otherwise(r)


_Op = Callable[[pl.Expr, pl.Expr], pl.Expr]
_COMPARISONS: dict[type[exp.Expr], _Op] = {exp.EQ: operator.eq, exp.NEQ: operator.ne}
_COMPARISONS |= {
    exp.LT: operator.lt,
    exp.LTE: operator.le,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
}
# Division is true division on both sides: int / int is a double, x / 0 is ±inf or NaN.
_ARITHMETIC: dict[type[exp.Expr], _Op] = {exp.Add: operator.add, exp.Sub: operator.sub}
_ARITHMETIC |= {exp.Mul: operator.mul, exp.Div: operator.truediv, exp.Mod: _trunc_mod}
_PARTS = ("year", "month", "day", "hour", "minute", "second")
_PART_NODES: dict[type[exp.Expr], str] = {exp.Year: "year", exp.Month: "month", exp.Day: "day"}
_PART_NODES |= {exp.Hour: "hour", exp.Minute: "minute", exp.Second: "second"}
_TEXT_FUNCTIONS: dict[type[exp.Expr], tuple[Callable[[pl.Expr], pl.Expr], str]] = {
    exp.Lower: (lambda e: e.str.to_lowercase(), "str"),
    exp.Upper: (lambda e: e.str.to_uppercase(), "str"),
    exp.Length: (lambda e: e.str.len_chars().cast(pl.Int64), "int"),
}
_FUNCTIONS = "abs, coalesce, length, lower, upper, year ... second, extract, date_part"

# Tokens that only ever start something forbidden: rejected before parsing, with a position.
_FORBIDDEN_TOKENS = {
    TokenType.SEMICOLON: "several statements (';')",
    TokenType.SELECT: "a subquery (SELECT)",
    TokenType.WITH: "a subquery (WITH)",
    TokenType.UNION: "UNION",
    TokenType.INTERSECT: "INTERSECT",
    TokenType.EXCEPT: "EXCEPT",
    TokenType.EXISTS: "EXISTS (a subquery)",
    TokenType.CASE: "CASE",
    TokenType.PLACEHOLDER: "a parameter placeholder ('?')",
    TokenType.PARAMETER: "a parameter placeholder ('$')",
    TokenType.COLON: "a parameter placeholder (':name')",
    TokenType.OVER: "a window function (OVER)",
}
_NODE_NAMES: dict[type[exp.Expr], str] = {
    exp.Select: "a subquery (SELECT)",
    exp.Subquery: "a subquery",
    exp.Star: "'*'",
    exp.Placeholder: "a parameter placeholder",
    exp.Parameter: "a parameter placeholder",
    exp.Window: "a window function",
    exp.Alias: "an alias",
}
# The allow-list: node types and the arguments each may carry. Any other non-empty argument
# is rejected, so nothing can hide in a part of a node the compiler does not visit.
_THIS, _BINARY = frozenset({"this"}), frozenset({"this", "expression"})
_ARGS: dict[type[exp.Expr], frozenset[str]] = {
    **dict.fromkeys([*_COMPARISONS, *_ARITHMETIC, exp.And, exp.Or, exp.Is, exp.Escape], _BINARY),
    **dict.fromkeys([*_PART_NODES, *_TEXT_FUNCTIONS, exp.Abs, exp.Neg, exp.Not], _THIS),
    **dict.fromkeys([exp.Paren, exp.Boolean, exp.DataType, exp.Var], _THIS),
    exp.Column: frozenset({"this", "table", "db", "catalog"}),  # qualified: see _column
    **dict.fromkeys([exp.Like, exp.ILike], frozenset({"this", "expression", "negate"})),
    **dict.fromkeys([exp.In, exp.Coalesce, exp.Anonymous], frozenset({"this", "expressions"})),
    exp.Identifier: frozenset({"this", "quoted"}),
    exp.Literal: frozenset({"this", "is_string"}),
    exp.Null: frozenset(),
    exp.Between: frozenset({"this", "low", "high"}),
    exp.Cast: frozenset({"this", "to"}),
    exp.Extract: _BINARY,
}
_STRUCTURAL = (exp.Identifier, exp.DataType, exp.Var)
_OPERATORS: tuple[type[exp.Expr], ...] = (
    *_COMPARISONS,
    *_ARITHMETIC,
    exp.Neg,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
)  # only inside the nodes that own them

_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TS_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")  # Rust regex; escaping other chars is an error


@dataclass(frozen=True)
class _Typed:
    expr: pl.Expr
    kind: str


def _kind_of(dtype: pl.DataType | type[pl.DataType]) -> str:
    cls = dtype if isinstance(dtype, type) else type(dtype)
    if cls.is_integer() or cls.is_float():
        return "int" if cls.is_integer() else "float"
    if issubclass(cls, pl.Datetime):
        return "tstz" if getattr(dtype, "time_zone", None) else "ts"
    kinds = {pl.Boolean: "bool", pl.String: "str", pl.Categorical: "str", pl.Enum: "str"}
    kinds |= {pl.Date: "date", pl.Null: "null"}
    return next((k for c, k in kinds.items() if issubclass(cls, c)), "any")


def _snippet(node: exp.Expr) -> str:
    try:  # only for messages: never let rendering a rejected node raise something else
        return repr(node.sql("duckdb")[:40])
    except Exception:
        return type(node).__name__


def _is_number(node: exp.Expr) -> bool:  # -1 needs no parentheses
    return isinstance(node, exp.Neg) and isinstance(node.this, (exp.Literal, exp.Cast))


def _filled(arg: object) -> bool:
    return not (arg is None or arg is False or (isinstance(arg, list) and not arg))


class _Compiler:
    """Checks one filter text and compiles it; every failure is a FilterError."""

    def __init__(self, text: str, label: str, columns: ColumnSpec | None) -> None:
        self.text, self.label = text, label
        self.names = None if columns is None else list(columns)
        self.dtypes = columns if isinstance(columns, Mapping) else None
        self.used: set[str] = set()

    def run(self) -> Filter:
        if not isinstance(self.text, str) or not self.text.strip():
            self.fail("empty filter", hint="write a condition such as \"status = 'active'\"")
        if len(self.text) > MAX_FILTER_CHARS:
            self.fail(f"filter is too long ({len(self.text):,} characters; at most 10,000)")
        holder = exp.Paren(this=self._parse())  # a parent, so that rewrites may replace any node
        try:
            expr = self.condition(holder.this, "a filter")
        except RecursionError:
            self.fail("filter is nested too deeply")
        root = holder.this.pop()
        for node in root.walk():
            # Second line of defence: whatever the compiler did, nothing outside the
            # allow-list (or carrying a comment) may reach the SQL.
            if type(node) not in _ARGS or node.comments:
                self.fail(f"{self.describe(node)} is not allowed in a filter", node)
        return Filter(self.text, root, frozenset(self.used), expr)

    def _parse(self) -> exp.Expr:
        dialect = Dialect.get_or_raise("duckdb")
        try:
            tokens = dialect.tokenize(self.text)
        except TokenError as e:
            # "Missing ' from 1:4": the number after the colon is the quote's offset.
            where = re.search(r"Missing \S+ from \d+:(\d+)", str(e.__cause__))
            if where is None:  # e.g. an unterminated /* comment
                comment = self.text.find("/*")
                if comment >= 0:
                    self.fail("comments are not allowed in a filter", offset=comment)
                self.fail("cannot read the filter")
            offset = int(where[1])
            self.fail("unterminated string or quoted name", offset=min(offset, len(self.text) - 1))
        except Exception as e:  # sqlglot may raise anything on hostile input
            self.fail(f"cannot read the filter ({type(e).__name__})")
        pos, opened = 0, []
        for tok in tokens:
            self._check_gap(pos, tok.start)
            pos = tok.end + 1
            if tok.token_type in _FORBIDDEN_TOKENS:
                what = _FORBIDDEN_TOKENS[tok.token_type]
                self.fail(f"{what} is not allowed in a filter", offset=tok.start)
            if tok.token_type == TokenType.L_PAREN:
                opened.append(tok.start)
            elif tok.token_type == TokenType.R_PAREN:
                if not opened:
                    self.fail("unbalanced parentheses: ')' without '('", offset=tok.start)
                opened.pop()
        self._check_gap(pos, len(self.text))
        if opened:
            self.fail("unbalanced parentheses: '(' is never closed", offset=opened[-1])
        try:
            trees = dialect.parser().parse(tokens, self.text)
        except ParseError as e:
            err = e.errors[0] if e.errors else {}
            line, col = err.get("line"), err.get("col")
            at = self._offset(line, col) if line and col else None
            self.fail(f"syntax error: {self._syntax(err)}", offset=at)
        except RecursionError:
            self.fail("filter is nested too deeply")
        except Exception as e:
            self.fail(f"cannot parse the filter ({type(e).__name__})")
        if len(trees) != 1 or trees[0] is None:
            self.fail("empty filter")
        stack = [(trees[0], 1)]
        while stack:  # iterative: the tree may be too deep to recurse over
            node, level = stack.pop()
            if level > MAX_NESTING:
                self.fail("filter is nested too deeply", node)
            for child in node.iter_expressions():
                chained = isinstance(node, exp.Connector) and type(child) is type(node)
                stack.append((child, level if chained else level + 1))
        return trees[0]

    def _check_gap(self, start: int, end: int) -> None:
        # sqlglot sets comments aside (or drops them): any text between tokens is one.
        gap = self.text[start:end].rstrip()
        rest = gap.lstrip()
        if rest:
            at = start + len(gap) - len(rest)
            if rest.startswith(("--", "/*")):
                self.fail("comments are not allowed in a filter", offset=at)
            self.fail(f"unexpected text {rest[:20]!r}", offset=at)

    @staticmethod
    def _syntax(err: Mapping[str, Any]) -> str:
        desc = str(err.get("description", "invalid filter"))
        if desc.startswith("Expecting "):
            return f"expected {desc.removeprefix('Expecting ')!r}"
        if desc.startswith("Required keyword"):
            return "incomplete expression"
        return f"unexpected {err['highlight']!r}" if err.get("highlight") else desc

    def _offset(self, line: int, col: int) -> int:
        lines = self.text.split("\n")
        return sum(len(x) + 1 for x in lines[: line - 1]) + max(col - 1, 0)

    def fail(
        self,
        message: str,
        node: exp.Expr | None = None,
        *,
        hint: str | None = None,
        offset: int | None = None,
    ) -> NoReturn:
        if offset is None and node is not None:
            starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
            offset = min(starts, default=None)
        if offset is None:
            raise FilterError(message, hint=hint, location=self.label)
        line = self.text.count("\n", 0, offset) + 1
        col = offset - self.text.rfind("\n", 0, offset)
        where = f"{self.label}:{line}:{col}"
        raise FilterError(f"{message} (at position {offset + 1})", hint=hint, location=where)

    def describe(self, node: exp.Expr) -> str:
        name = next((n for c, n in _NODE_NAMES.items() if isinstance(node, c)), None)
        if name:
            return name
        if isinstance(node, exp.Column) and node.table:
            return f"a qualified column name ({_snippet(node)})"
        if isinstance(node, exp.Func):
            meta = node.meta
            fn = self.text[meta["start"] : meta["end"] + 1] if "end" in meta else node.sql_name()
            return f"function {fn}()"
        return f"{node.key.upper()} ({_snippet(node)})"

    # -- compilation: each node to a typed Polars expression ---------------------------------
    def condition(self, node: exp.Expr, role: str) -> pl.Expr:
        typed = self.compile(node)
        if typed.kind == "null":
            return typed.expr.cast(pl.Boolean)
        if typed.kind != "bool":
            hint = "compare it, e.g. `x = 1`, `flag = TRUE` or `x IS NOT NULL`"
            self.fail(f"{role} must be a condition, not {_snippet(node)}", node, hint=hint)
        return typed.expr

    def check_args(self, node: exp.Expr) -> None:
        allowed = _ARGS.get(type(node))
        if allowed is None or isinstance(node, _STRUCTURAL):
            hint = f"allowed functions: {_FUNCTIONS}" if isinstance(node, exp.Func) else None
            self.fail(f"{self.describe(node)} is not allowed in a filter", node, hint=hint)
        extra = next((k for k, v in node.args.items() if k not in allowed and _filled(v)), None)
        if extra:
            self.fail(f"{self.describe(node)} with {extra.upper()} is not allowed", node)

    def compile(self, node: exp.Expr) -> _Typed:
        self.check_args(node)
        cls = type(node)
        if cls in _OPERATORS:
            # Parenthesize operator operands: the SQL then means, to DuckDB, exactly the
            # tree sqlglot built (DuckDB rejects `a = b = c`, and binds some operators
            # differently).
            for key in ("this", "expression", "low", "high"):
                child = node.args.get(key)
                if isinstance(child, _OPERATORS) and not _is_number(child):
                    paren = exp.Paren()
                    child.replace(paren)
                    paren.set("this", child)
        if cls in _COMPARISONS:
            a, b = self.pair(node.this, node.expression)
            return _Typed(_COMPARISONS[cls](a.expr, b.expr), "bool")
        if cls in _ARITHMETIC:
            a, b = self.number_arg(node.this), self.number_arg(node.expression)
            kinds = {a.kind, b.kind}
            if cls is exp.Mod and "float" in kinds:
                # Polars computes the remainder of doubles inexactly (-7 % 1e300 gives 0).
                hint = "CAST the operands to BIGINT"
                self.fail("% needs integers, not doubles", node, hint=hint)
            if cls is exp.Div or "float" in kinds:
                kind = "float"
            else:
                kind = "any" if "any" in kinds else "int" if "int" in kinds else "null"
            return _Typed(_ARITHMETIC[cls](a.expr, b.expr), kind)
        if cls in _PART_NODES:
            return self.date_part(_PART_NODES[cls], node.this)
        if cls in _TEXT_FUNCTIONS:
            fn, kind = _TEXT_FUNCTIONS[cls]
            typed = self.compile(node.this)
            if typed.kind not in _TEXT:
                self.fail(f"{self.describe(node)} needs text, not {_KIND_NAMES[typed.kind]}", node)
            return _Typed(
                fn(typed.expr.cast(pl.String) if typed.kind == "null" else typed.expr), kind
            )
        handler: Callable[[Any], _Typed] = getattr(self, f"_{cls.__name__.lower()}")
        return handler(node)

    def number_arg(self, node: exp.Expr) -> _Typed:
        typed = self.compile(node)
        if typed.kind not in _NUMERIC:
            what = node.parent.key.upper() if node.parent else "arithmetic"
            self.fail(f"{what} needs numbers, not {_KIND_NAMES[typed.kind]}", node)
        # A NULL literal has Polars dtype Null; give it a number type to compute with.
        return _Typed(typed.expr.cast(pl.Int64), "null") if typed.kind == "null" else typed

    def pair(self, left: exp.Expr, right: exp.Expr) -> tuple[_Typed, _Typed]:
        """Both operands of a comparison, coerced to each other."""
        a, b = self.compile(left), self.compile(right)
        a = self.coerce(left, a, b.kind)
        return a, self.against(a, right, b)

    def against(self, a: _Typed, node: exp.Expr, b: _Typed | None = None) -> _Typed:
        """Operand ``node`` to compare with ``a``: coerced to it and checked comparable."""
        b = self.coerce(node, b or self.compile(node), a.kind)
        self.comparable(a, b, node.parent or node)
        return b

    def comparable(self, a: _Typed, b: _Typed, node: exp.Expr) -> None:
        if {a.kind, b.kind} & {"any", "null"}:
            return
        fa, fb = _FAMILY.get(a.kind, a.kind), _FAMILY.get(b.kind, b.kind)
        if fa != fb and {a.kind, b.kind} != {"date", "tstz"}:
            message = f"cannot compare {_KIND_NAMES[a.kind]} with {_KIND_NAMES[b.kind]}"
            hint = "give both sides one type (quote text, write DATE '...', or CAST)"
            self.fail(message, node, hint=hint)

    def coerce(self, node: exp.Expr, typed: _Typed, other: str) -> _Typed:
        # DuckDB casts a text literal to the date/timestamp type it is compared with; Polars
        # does not. Write the cast into the AST and compile the typed literal instead.
        if other not in _TEMPORAL:
            return typed
        if isinstance(node, exp.Literal) and node.is_string:
            target = _TEMPORAL[other]
        elif other == "tstz" and typed.kind == "ts" and isinstance(node, exp.Cast):
            target = "TIMESTAMPTZ"  # a naive literal against an aware column: read it as UTC
            if not node.this.is_string:
                return typed
        else:
            return typed
        cast = exp.Cast(
            this=exp.Literal.string(node.name), to=exp.DataType.build(target, dialect="duckdb")
        )
        node.replace(cast)
        return self.compile(cast)

    # Handlers, found by node class name in compile().
    def _column(self, node: exp.Column) -> _Typed:
        ident = node.this
        if node.table or not isinstance(ident, exp.Identifier):
            message = f"{self.describe(node)} is not allowed in a filter"
            self.fail(message, node, hint="use the bare column name")
        name = ident.name
        if self.names is not None and name not in self.names:
            # DuckDB resolves identifiers case-insensitively; Polars needs the exact name.
            folded = [c for c in self.names if c.lower() == name.lower()]
            if len(folded) != 1:
                hint = did_you_mean(name, self.names)
                self.fail(f"unknown column {name!r} in filter", node, hint=hint)
            name = folded[0]
        ident.set("this", name)
        ident.set("quoted", True)
        self.used.add(name)
        if self.dtypes is None:
            return _Typed(pl.col(name), "any")
        dtype = self.dtypes[name]
        kind = _kind_of(dtype)
        if issubclass(dtype if isinstance(dtype, type) else type(dtype), (pl.Categorical, pl.Enum)):
            return _Typed(pl.col(name).cast(pl.String), kind)  # by value, not category order
        if kind == "tstz":  # same instants in one zone, so literals (UTC) compare with it
            return _Typed(pl.col(name).dt.convert_time_zone("UTC"), kind)
        return _Typed(pl.col(name), kind)

    def _literal(self, node: exp.Literal) -> _Typed:
        if node.is_string:
            return _Typed(pl.lit(node.this, dtype=pl.String), "str")
        value = self.number(node)
        if isinstance(value, int):
            return _Typed(pl.lit(value, dtype=pl.Int64), "int")
        # DuckDB reads 0.1 as an exact DECIMAL (3 * 0.1 = 0.3 holds there but not in
        # Polars): write a DOUBLE cast into the AST so both sides compute in doubles.
        node.replace(exp.Cast(this=node.copy(), to=exp.DataType.build("DOUBLE", dialect="duckdb")))
        return _Typed(pl.lit(value, dtype=pl.Float64), "float")

    def number(self, node: exp.Literal) -> int | float:
        text = node.this
        if re.fullmatch(r"[0-9]+", text):
            if len(text) > 19 or int(text) >= 2**63:  # (int() refuses 4,300+ digit strings)
                self.fail(f"integer {text} is out of range", node)
            return int(text)
        try:
            value = float(text)
        except ValueError:
            self.fail(f"invalid number {text!r}", node)
        if abs(value) == float("inf"):
            self.fail(f"number {text} is out of range", node)
        return value

    def _boolean(self, node: exp.Boolean) -> _Typed:
        return _Typed(pl.lit(bool(node.this), dtype=pl.Boolean), "bool")

    def _null(self, node: exp.Null) -> _Typed:
        return _Typed(pl.lit(None), "null")

    def _paren(self, node: exp.Paren) -> _Typed:
        return self.compile(node.this)

    def _not(self, node: exp.Not) -> _Typed:
        return _Typed(~self.condition(node.this, "the operand of NOT"), "bool")

    def _and(self, node: exp.And) -> _Typed:
        # Flattened, so long chains do not recurse; *_horizontal follow SQL's Kleene logic.
        sides = [self.condition(n, "each side of AND") for n in node.flatten()]
        return _Typed(pl.all_horizontal(*sides), "bool")

    def _or(self, node: exp.Or) -> _Typed:
        sides = [self.condition(n, "each side of OR") for n in node.flatten()]
        return _Typed(pl.any_horizontal(*sides), "bool")

    def _neg(self, node: exp.Neg) -> _Typed:
        typed = self.number_arg(node.this)
        return _Typed(-typed.expr, typed.kind)

    def _abs(self, node: exp.Abs) -> _Typed:
        typed = self.number_arg(node.this)
        return _Typed(typed.expr.abs(), typed.kind)

    def _is(self, node: exp.Is) -> _Typed:
        typed, rhs = self.compile(node.this), node.expression
        if isinstance(rhs, exp.Null):
            return _Typed(typed.expr.is_null(), "bool")
        if not isinstance(rhs, exp.Boolean) or typed.kind not in ("bool", "any", "null"):
            self.fail(f"{_snippet(node)}: IS takes NULL, TRUE or FALSE after a condition", node)
        if typed.kind == "null":
            return _Typed(pl.lit(False), "bool")
        return _Typed(typed.expr.eq_missing(bool(rhs.this)), "bool")  # NULL IS TRUE is false

    def _in(self, node: exp.In) -> _Typed:
        if not node.expressions:
            self.fail("IN needs at least one value", node)
        for value in node.expressions:
            inner = value
            while isinstance(inner, (exp.Neg, exp.Cast)):  # -1, DATE '...', CAST(-0.5 AS DOUBLE)
                inner = inner.this
            if not isinstance(inner, (exp.Literal, exp.Null, exp.Boolean)):
                self.fail("IN lists may contain only literal values", value)
        # x IN (a, b) is x = a OR x = b, NULLs included: 2 IN (1, NULL) is NULL in both.
        x = self.compile(node.this)
        values = [self.against(x, v) for v in list(node.expressions)]
        for value in values:  # DuckDB also wants one type within the list
            self.comparable(values[0], value, node)
        return _Typed(pl.any_horizontal(*(x.expr == v.expr for v in values)), "bool")

    def _between(self, node: exp.Between) -> _Typed:
        x = self.compile(node.this)
        low, high = (self.against(x, node.args[k]) for k in ("low", "high"))
        self.comparable(low, high, node)  # DuckDB also wants the bounds of one type
        return _Typed((x.expr >= low.expr) & (x.expr <= high.expr), "bool")

    def _escape(self, node: exp.Escape) -> _Typed:
        like, esc = node.this, node.expression
        if not isinstance(like, (exp.Like, exp.ILike)):
            self.fail(f"{self.describe(node)} is not allowed in a filter", node)
        if not (isinstance(esc, exp.Literal) and esc.is_string and len(esc.this) <= 1):
            self.fail("ESCAPE takes a single character", esc)
        self.check_args(like)
        return self.like(like, esc.this)

    def _like(self, node: exp.Like) -> _Typed:
        return self.like(node, "")

    def _ilike(self, node: exp.ILike) -> _Typed:
        return self.like(node, "")

    def like(self, node: exp.Expr, escape: str) -> _Typed:
        fold, pattern = isinstance(node, exp.ILike), node.expression
        typed = self.compile(node.this)
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            self.fail("a LIKE pattern must be a text literal", pattern)
        if typed.kind not in _TEXT:
            self.fail(f"LIKE needs text, not {_KIND_NAMES[typed.kind]}", node.this)
        out, chars = [], iter(pattern.this)
        for ch in chars:
            if ch in "%_" and ch != escape:
                out.append(".*" if ch == "%" else ".")
                continue
            if ch == escape and not (ch := next(chars, "")):
                self.fail("a LIKE pattern must not end with its escape character", pattern)
            # ILIKE compares lower-cased text with a lower-cased pattern, as DuckDB does.
            out.extend("\\" + c if c in _REGEX_META else c for c in (ch.lower() if fold else ch))
        subject = typed.expr.cast(pl.String) if typed.kind == "null" else typed.expr
        subject = subject.str.to_lowercase() if fold else subject
        matched = subject.str.contains("(?s)^" + "".join(out) + "$")  # % and _ match newlines
        return _Typed(~matched if node.args.get("negate") else matched, "bool")

    def _cast(self, node: exp.Cast) -> _Typed:
        to, src = node.to, node.this
        target = None if to.expressions else _CAST_TARGETS.get(to.this)
        if target is None:
            hint = "use INT, BIGINT, DOUBLE, VARCHAR, BOOLEAN, DATE or TIMESTAMP"
            self.fail(f"CAST to {_snippet(to)} is not supported", node, hint=hint)
        sql_name, kind, dtype = target
        node.set("to", exp.DataType.build(sql_name, dialect="duckdb"))
        if isinstance(src, exp.Literal) and src.is_string and kind in _TEMPORAL:
            return self.temporal_literal(src, kind)
        if isinstance(src, exp.Literal) and not src.is_string and kind == "float":
            return _Typed(pl.lit(float(self.number(src)), dtype=pl.Float64), kind)  # no 2nd cast
        typed = self.compile(src)
        allowed = _CASTS.get(typed.kind)  # None: NULL or unknown type, cast the Polars way
        if kind == "tstz" or (allowed is not None and kind not in allowed):
            what = _KIND_NAMES.get(typed.kind, typed.kind)
            self.fail(f"cannot CAST {what} to {sql_name}", node)
        # Not strict: a value DuckDB cannot cast raises there only if it gets evaluated
        # (not behind a FALSE AND ...); as NULL it is never selected here either.
        expr = typed.expr
        if typed.kind == "float" and kind == "int":
            expr = expr.round(0)  # DuckDB rounds half to even; Polars' cast would truncate
        elif typed.kind == "str" and kind == "float":
            expr = expr.str.strip_chars(" \t\n\r\v\f")  # DuckDB skips ASCII whitespace
        return _Typed(expr.cast(dtype, strict=False), kind)

    def temporal_literal(self, node: exp.Literal, kind: str) -> _Typed:
        text = node.this.strip()
        match = (_DATE_RE if kind == "date" else _TS_RE).fullmatch(text)
        try:
            if match is None:
                raise ValueError(text)
            y, mo, d, h, mi, s = (int(g) if g else 0 for g in (*match.groups(), 0, 0, 0)[:6])
            if kind == "date":
                return _Typed(pl.lit(dt.date(y, mo, d), dtype=pl.Date), kind)
            micros = int(((match[7] or "") + "000000")[:6])  # DuckDB truncates past micros
            value, offset = dt.datetime(y, mo, d, h, mi, s, micros), match[8]
            if kind == "ts":
                if offset:  # DuckDB would silently drop it
                    raise ValueError(offset)
                return _Typed(pl.lit(value, dtype=pl.Datetime("us")), kind)
            if offset and offset != "Z":
                minutes = int(offset[1:3]) * 60 + int(offset.replace(":", "")[3:5] or 0)
                value -= dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes)
            # Without an offset DuckDB would use its session zone: state UTC explicitly.
            node.set("this", value.isoformat(sep=" ") + "+00:00")
            aware = value.replace(tzinfo=dt.timezone.utc)
            return _Typed(pl.lit(aware, dtype=pl.Datetime("us", "UTC")), kind)
        except (ValueError, OverflowError):
            hint = "write e.g. DATE '2024-01-31' or TIMESTAMP '2024-01-31 12:00:00'"
            self.fail(f"invalid {_TEMPORAL[kind]} literal {text!r}", node, hint=hint)

    def _coalesce(self, node: exp.Coalesce) -> _Typed:
        typed = [self.compile(a) for a in [node.this, *node.expressions]]
        kinds = {t.kind for t in typed} - {"null"}
        if len({_FAMILY.get(k, k) for k in kinds - {"any"}}) > 1:
            self.fail("coalesce() arguments must have one type", node)
        kind = next((k for k in ("any", "float", "ts") if k in kinds), min(kinds, default="null"))
        return _Typed(pl.coalesce(*(t.expr for t in typed)), kind)

    def _extract(self, node: exp.Extract) -> _Typed:
        unit = node.this
        if not isinstance(unit, exp.Var) or unit.name.lower() not in _PARTS:
            self.fail("EXTRACT supports YEAR, MONTH, DAY, HOUR, MINUTE and SECOND", node)
        return self.date_part(unit.name.lower(), node.expression)

    def _anonymous(self, node: exp.Anonymous) -> _Typed:
        args = node.expressions
        if node.name.lower() != "date_part" or len(args) != 2:
            hint = f"allowed functions: {_FUNCTIONS}"
            self.fail(f"{self.describe(node)} is not allowed in a filter", node, hint=hint)
        unit = args[0]
        if not (isinstance(unit, exp.Literal) and unit.is_string and unit.this.lower() in _PARTS):
            self.fail("date_part() supports 'year', 'month', ... 'second'", unit)
        return self.date_part(unit.this.lower(), args[1])

    def date_part(self, part: str, arg: exp.Expr) -> _Typed:
        typed = self.compile(arg)
        if typed.kind == "null":
            return _Typed(pl.lit(None, dtype=pl.Int64), "int")
        if typed.kind not in ("date", "ts", "tstz", "any"):
            self.fail(f"{part}() needs a date or timestamp, not {_KIND_NAMES[typed.kind]}", arg)
        expr = typed.expr
        if typed.kind == "date" and part in ("hour", "minute", "second"):
            expr = expr.cast(pl.Datetime("us"))  # a date's hour is 0 in DuckDB
        # Aware columns are converted to UTC (see _column): mxd runs DuckDB in UTC.
        return _Typed(getattr(expr.dt, part)().cast(pl.Int64), "int")
