"""Stable, vectorised sample hashes rendered exactly as Metaxy renders them.

xxhash family and wyhash: the unsigned integer as decimal text; md5 and sha256: lowercase
hex. Then truncated to the first ``length`` characters. The hash functions come from
polars-hash (fixed algorithms, seed 0), never from Polars' own ``hash()``, whose values
change between processes and versions.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import polars_hash  # noqa: F401  (registers the .nchash / .chash expression namespaces)

from mxd_cli.config import HASH_ALGORITHMS
from mxd_cli.errors import ConfigError

SEPARATOR = "|"


def hash_expr(text: pl.Expr, algorithm: str, length: int) -> pl.Expr:
    """``T(h(text))`` for a String expression (null stays null)."""
    ns = text.nchash  # type: ignore[attr-defined]
    if algorithm == "xxhash32":
        digest = ns.xxhash32().cast(pl.String)
    elif algorithm == "xxhash64":
        digest = ns.xxhash64().cast(pl.String)
    elif algorithm == "xxh3_64":
        digest = ns.xxh3_64().cast(pl.String)
    elif algorithm == "wyhash":
        digest = ns.wyhash().cast(pl.String)
    elif algorithm == "md5":
        digest = ns.md5()
    elif algorithm == "sha256":
        digest = text.chash.sha2_256()  # type: ignore[attr-defined]
    else:
        raise ConfigError(
            f"unknown hash algorithm {algorithm!r}",
            hint=f"use one of {', '.join(HASH_ALGORITHMS)}",
        )
    result: pl.Expr = digest.str.slice(0, length)
    return result


def joined(parts: Sequence[pl.Expr]) -> pl.Expr:
    """Parts joined with ``|``; a null part counts as the empty string (separators stay)."""
    return pl.concat_str([p.fill_null("") for p in parts], separator=SEPARATOR)


def combine_expr(values: Sequence[pl.Expr], algorithm: str, length: int) -> pl.Expr:
    """``T(h(join("|", values)))``: per-sample provenance from per-field values (recipe 10)."""
    return hash_expr(joined(values), algorithm, length)
