"""``@asset(Feature)``: bind a Python function that computes a feature's rows."""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
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
    #: Where the chunks are computed: "driver" (this process) or "spark" (the executors
    #: of a spark store's session; on other stores it runs in the driver).
    executor: str = "driver"

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


@dataclass(frozen=True)
class AssetContext:
    """What an asset gets besides its rows.

    ``feature``: the key; ``run_id``; ``project_dir``: the folder of the config file;
    ``partition``: ``{"column": value}`` when the run is partitioned, else None;
    ``log``: a logger whose messages reach the terminal; ``counts``: the increment counts
    of this feature in this run (``new``, ``stale``, ``orphaned``, ``unchanged``);
    ``metadata``: what :meth:`add_metadata` recorded so far.
    """

    feature: FeatureKey
    run_id: str
    project_dir: Path
    partition: Mapping[str, Any] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("mxd.asset"))
    counts: Mapping[str, int] = field(default_factory=dict)
    # Frozen context, mutable record: the run reads this dict back after the asset calls.
    metadata: dict[str, Any] = field(default_factory=dict)
    reader: Callable[[Any, Sequence[str] | None, str | None], Any] | None = field(
        default=None, repr=False, compare=False
    )

    def read(
        self, feature: Any, columns: Sequence[str] | None = None, filter: str | None = None
    ) -> Any:
        """Another feature's current rows, as a Polars LazyFrame, from the run's own store
        and its fallbacks (the same resolution mxd uses), so an asset never opens a store.

        Example: ``ctx.read("docs/chunks", columns=["doc_id", "sentence"], filter="lang = 'en'")``.
        ``filter`` is the allow-listed SQL of ``--filter``; ``columns`` default to all.
        """
        if self.reader is None:
            from mxd_cli.errors import AssetError

            raise AssetError(f"ctx.read is not available here (feature {self.feature})")
        return self.reader(feature, columns, filter)

    def add_metadata(self, **values: Any) -> None:
        """Record metadata of this feature in this run (``mxd runs --json``, the materialize
        JSON and Dagster's materialization metadata).

        Example: ``ctx.add_metadata(model="v3", accuracy=0.91, classes={"a": 3, "b": 5})``.
        Values are numbers, strings, booleans, None, or small JSON-able lists and dicts of
        them (at most 10,000 characters of JSON each); a later call with the same name
        replaces the value (an asset called once per chunk keeps the last one).
        """
        for name, value in values.items():
            self.metadata[name] = _metadata_value(self.feature, name, value)


METADATA_VALUE_LIMIT = 10_000  # characters of JSON per value: run history, not a data store


def _metadata_value(feature: FeatureKey, name: str, value: Any) -> Any:
    """``value`` checked and copied (lists and dicts via JSON, so later changes don't leak in)."""
    where = f"ctx.add_metadata({name}=...) in the asset of {feature}"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a finite number (JSON has no NaN or inf)")
        return value
    if not isinstance(value, (list, tuple, dict)):
        raise TypeError(
            f"{where}: {type(value).__name__} is not a metadata value; use a number, string, "
            "bool, None, or a small list or dict of them"
        )
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: not JSON-able ({exc})") from None
    if len(text) > METADATA_VALUE_LIMIT:
        raise ValueError(
            f"{where}: {len(text):,} characters of JSON, more than {METADATA_VALUE_LIMIT:,}; "
            "keep metadata small (write large results to a feature or a file)"
        )
    return json.loads(text)


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
    executor: str = "driver",
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

    ``executor="spark"`` (downstream assets): on a spark store the chunks are computed on
    the cluster's executors (``mapInArrow`` over the increment), each bounded job committed
    atomically; on any other store, and in dry runs, the asset runs here as usual. The
    function and its module must be importable there (mxd ships single-file modules).
    """
    key = feature_key_of(feature)
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0
    ):
        raise DefinitionError(f"asset of {key}: chunk_size must be a positive integer")
    if source_version is not None and not callable(source_version):
        raise DefinitionError(f"asset of {key}: source_version must be a function of ctx")
    if executor not in ("driver", "spark"):
        raise DefinitionError(
            f"asset of {key}: executor must be 'driver' or 'spark', not {executor!r}"
        )

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
        if executor == "spark" and arity == 1:
            raise DefinitionError(
                f"asset {getattr(fn, '__qualname__', fn)!r} of {key}: a root asset runs in "
                "the driver (it returns every sample); executor='spark' is for downstream assets",
                location=str(origin),
            )
        definition = AssetDefinition(key, fn, chunk_size, origin, arity, source_version, executor)
        active_registry().add_asset(key, definition, origin)
        return fn

    return register
