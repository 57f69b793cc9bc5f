"""``@asset(Feature)``: bind a Python function that computes a feature's rows."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.definitions.registry import Origin, active_registry
from mxd_cli.definitions.spec import feature_key_of
from mxd_cli.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AssetDefinition:
    """A registered asset: the function, its feature and how to call it."""

    feature: FeatureKey
    fn: Callable[..., Any]
    chunk_size: int | None
    origin: Origin
    arity: int  # 1: root style (ctx); 2: downstream style (ctx, rows)
    source_version: Callable[[AssetContext], str] | None = None

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


@dataclass(frozen=True)
class AssetContext:
    """What an asset gets besides its rows.

    ``feature``: the key; ``run_id``; ``project_dir``: the folder of the config file;
    ``partition``: ``{"column": value}`` when the run is partitioned, else None;
    ``log``: a logger whose messages reach the terminal; ``counts``: the increment counts
    of this feature in this run (``new``, ``stale``, ``orphaned``, ``unchanged``).
    """

    feature: FeatureKey
    run_id: str
    project_dir: Path
    partition: Mapping[str, Any] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("mxd.asset"))
    counts: Mapping[str, int] = field(default_factory=dict)


def file_version(*paths: str | Path) -> str:
    """A ``source_version`` token for files: each one's size and modification time.

    Example: ``@asset(Raw, source_version=lambda ctx: file_version(ctx.project_dir / "a.csv"))``.
    A missing file counts too (as ``-``), so creating it later changes the token.
    """
    parts = []
    for path in paths:
        try:
            stat = Path(path).stat()
        except FileNotFoundError:
            parts.append(f"{path}:-")
            continue
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _positional_arity(fn: Callable[..., Any]) -> int:
    params = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def asset(
    feature: object,
    *,
    chunk_size: int | None = None,
    source_version: Callable[[AssetContext], str] | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the asset of ``feature``.

    Example::

        @asset(Clean, chunk_size=10_000)
        def clean(ctx: AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
            return rows.with_columns(pl.col("value").str.to_lowercase())

    A root feature's asset takes ``(ctx)`` and returns every current sample; a downstream
    feature's asset takes ``(ctx, rows)`` and is called once per chunk of the increment.

    ``source_version`` (root assets only): a cheap function of ``ctx`` returning a token that
    changes whenever the source data may have changed (file sizes and modification times,
    a table's snapshot id...). When the token, the code and the store are all as they were
    after the last complete run, the asset is not called at all and the run costs nothing.
    """
    key = feature_key_of(feature)
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0
    ):
        raise DefinitionError(f"asset of {key}: chunk_size must be a positive integer")
    if source_version is not None and not callable(source_version):
        raise DefinitionError(f"asset of {key}: source_version must be a function of ctx")

    def register(fn: F) -> F:
        if not callable(fn):
            raise DefinitionError(f"@asset({key}) must decorate a function")
        origin = Origin.of(fn)
        arity = _positional_arity(fn)
        if arity not in (1, 2):
            raise DefinitionError(
                f"asset {getattr(fn, '__qualname__', fn)!r} of {key} takes {arity} positional "
                "arguments",
                hint="a root asset takes (ctx); a downstream asset takes (ctx, rows)",
                location=str(origin),
            )
        active_registry().add_asset(
            key, AssetDefinition(key, fn, chunk_size, origin, arity, source_version), origin
        )
        return fn

    return register
