"""Root samples: what a root asset returns, checked, hashed and staged in the engine.

A root asset returns every current sample — a frame, a lazy frame, or several yielded.
They are read in batches (a lazy frame is streamed, never collected whole), each batch's
ids and columns are checked, its provenance is hashed in Polars (polars-hash: natively, in
the batch), and it is appended to a temporary table of the store's engine. The compare with
the stored rows, and the write of the new and stale ones, then happen in the engine: root
rows cross into Python once, batch by batch, and never come back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.engine.assets import call_raw, to_polars
from mxd_cli.engine.output import check_columns, check_ids
from mxd_cli.engine.plan import TableSource
from mxd_cli.engine.provenance import with_root_provenance
from mxd_cli.engine.session import Session
from mxd_cli.engine.sql import col
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureNode
from mxd_cli.store import columns as c

#: Rows hashed and staged at a time (bounds the memory the hashing adds).
BATCH_ROWS = 250_000


@dataclass(frozen=True)
class StagedSamples:
    """A root's samples in the engine, with provenance, ready to compare."""

    source: TableSource
    rows: int
    columns: tuple[str, ...]


def frames(
    result: Any, asset: AssetDefinition, batch_rows: int = BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """What a root asset produced, as frames of at most ``batch_rows`` rows."""
    if isinstance(result, pl.LazyFrame):
        # (Streamed whatever engine the process prefers: with an in-memory affinity Polars
        # collects the whole frame before the first batch, 1.7 GB for 10M captions.)
        yield from result.collect_batches(chunk_size=batch_rows, engine="streaming")
        return
    if isinstance(result, pl.DataFrame) or _is_frame(result):
        frame = to_polars(result, asset)
        yield from (frame.slice(n, batch_rows) for n in range(0, max(frame.height, 1), batch_rows))
        return
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes, dict)):
        for part in result:
            yield from frames(part, asset, batch_rows)
        return
    yield to_polars(result, asset)  # (raises the asset error for anything else)


def _is_frame(obj: Any) -> bool:
    import narwhals as nw

    try:
        nw.from_native(obj, eager_only=True)
    except TypeError:
        return False
    return True


def stage_root_samples(
    session: Session,
    node: FeatureNode,
    asset: AssetDefinition,
    ctx: AssetContext,
    *,
    batch_rows: int = BATCH_ROWS,
    ids_only: bool = False,
) -> StagedSamples:
    """Call a root asset and stage every sample it returns (checked, with provenance).
    ``ids_only``: stage the checked ids alone, unhashed (enough to count samples against
    a store that holds none of the feature's rows)."""
    result = call_raw(asset, ctx)
    # A frame returned whole is in memory already: its hashed batches are handed to the
    # engine as they are, not copied into a table (a generator's may not fit: copied).
    in_memory = isinstance(result, pl.DataFrame) or (
        not isinstance(result, pl.LazyFrame) and _is_frame(result)
    )
    batches = frames(result, asset, batch_rows)
    return stage_samples(session, node, batches, asset, in_memory=in_memory, ids_only=ids_only)


def stage_samples(
    session: Session,
    node: FeatureNode,
    batches: Iterable[pl.DataFrame],
    asset: AssetDefinition | None = None,
    *,
    in_memory: bool = False,
    ids_only: bool = False,
) -> StagedSamples:
    """Stage root samples (frames) in the engine: checked, with provenance.

    ``in_memory``: the batches are slices of a frame held anyway, so the hashed batches
    are registered with the engine as one Arrow table (no copy) instead of inserted into
    a temporary table.
    """
    engine = session.engine
    ids = list(node.spec.id_columns)
    own = session.locate(node.key)
    stored_ids = (
        None if own is None else {k: own.schema.field(k).type for k in ids if k in own.schema.names}
    )
    stage: exp.Table | None = None
    held: list[pl.DataFrame] = []  # (in_memory: the hashed batches, registered at the end)
    id_types: dict[str, pl.DataType] | None = None
    rows = 0
    who = asset if asset is not None else _Anonymous(node)
    try:
        for frame in batches:
            check_columns(frame, who)  # type: ignore[arg-type]
            # (a frame held whole is checked for duplicates once, below)
            check_ids(frame, ids, who, unique=not in_memory)  # type: ignore[arg-type]
            if id_types is None:
                id_types = {k: frame.schema[k] for k in ids}
                _check_stored_id_types(who, id_types, stored_ids)
            else:
                for k in ids:
                    if frame.schema[k] != id_types[k]:
                        raise _fail(
                            who,
                            f"id column {k!r} is {frame.schema[k]} in one batch and "
                            f"{id_types[k]} in another",
                        )
            if ids_only:
                hashed = frame.select(ids)
            else:
                hashed = with_root_provenance(
                    frame.lazy(), node, session.hashing.algorithm, session.hashing.length
                ).collect(engine="in-memory")
            rows += frame.height
            if in_memory:
                held.append(hashed)
                continue
            nulls = [n for n, t in hashed.schema.items() if t == pl.Null]
            if stage is None:
                stage = engine.temp_table(hashed.drop(nulls).to_arrow().schema, prefix="__mxd_root")
            if nulls:
                present = set(engine.arrow(exp.select("*").from_(stage).limit(0)).column_names)
                hashed = hashed.drop([n for n in nulls if n not in present])
            engine.insert_arrow(stage, hashed)
    except AssetError:
        raise
    except Exception as exc:  # a lazy frame fails when collected, a generator when resumed
        raise AssetError(
            f"asset {who.name!r} of {node.key} raised {type(exc).__name__}: {exc}",
            location=str(who.origin),
        ) from exc
    if held:
        whole = pl.concat(held, how="vertical_relaxed", rechunk=False)
        whole = whole.drop([n for n, t in whole.schema.items() if t == pl.Null])
        check_ids(whole.select(ids), ids, who)  # type: ignore[arg-type]
        # (Like a staged table, it lives as long as the connection: restrictions that
        # follow lineage read a root's samples while resolving its downstream.)
        stage = engine.register(whole, prefix="__mxd_root")
    elif stage is not None:  # (batches staged one by one: duplicates across them)
        _check_unique(session, who, stage, ids)  # type: ignore[arg-type]
    if stage is None:
        stage = engine.temp_table(_empty_schema(node, stored_ids), prefix="__mxd_root")
    schema = engine.arrow(exp.select("*").from_(stage).limit(0)).schema
    return StagedSamples(TableSource(stage, schema, "stage"), rows, tuple(schema.names))


@dataclass(frozen=True)
class _Anonymous:
    """Stands in for an asset in messages when samples come from elsewhere."""

    node: FeatureNode

    @property
    def name(self) -> str:
        return "samples"

    @property
    def feature(self) -> object:
        return self.node.key

    @property
    def origin(self) -> object:
        return self.node.origin


def _fail(asset: AssetDefinition | _Anonymous, message: str, hint: str | None = None) -> AssetError:
    return AssetError(
        f"asset {asset.name!r} of {asset.feature}: {message}", hint=hint, location=str(asset.origin)
    )


def _check_stored_id_types(
    asset: AssetDefinition | _Anonymous,
    types: dict[str, pl.DataType],
    stored: dict[str, pa.DataType] | None,
) -> None:
    if not stored:
        return
    schema = pa.schema([(k, stored[k]) for k in types if k in stored])
    for k, was in c.polars_types(schema).items():
        if was != types[k]:
            raise _fail(
                asset,
                f"id column {k!r} is {types[k]} in the new samples but {was} in the store",
                hint="return ids of the same type as before, or rebuild the feature",
            )


def _check_unique(
    session: Session, asset: AssetDefinition, stage: exp.Table, ids: list[str]
) -> None:
    """Ids are unique across every batch the asset returned (each batch was checked)."""
    dupes = session.engine.rows(
        exp.select(*(col(k) for k in ids), exp.func("count", exp.Star()))
        .from_(stage)
        .group_by(*(col(k) for k in ids))
        .having(exp.func("count", exp.Star()) > 1)
        .limit(3)
    )
    if dupes:
        shown = ", ".join(str(dict(zip(ids, row[:-1], strict=True))) for row in dupes)
        raise _fail(
            asset,
            f"duplicate ids in column(s) {', '.join(ids)}: {shown}",
            hint="return one row per sample",
        )


def _empty_schema(node: FeatureNode, stored: dict[str, pa.DataType] | None) -> pa.Schema:
    fields = [pa.field(k, (stored or {}).get(k, pa.string())) for k in node.spec.id_columns]
    struct = pa.struct([pa.field(f.key.struct_key, pa.string()) for f in node.spec.fields])
    fields += [
        pa.field(c.PROVENANCE_BY_FIELD, struct),
        pa.field(c.PROVENANCE, pa.string()),
        pa.field(c.DATA_VERSION_BY_FIELD, struct),
        pa.field(c.DATA_VERSION, pa.string()),
    ]
    return pa.schema(fields)
