"""Chunks computed away from the driver: one asset call on an Arrow batch, as plain data.

:class:`ChunkFunction` is what a store that computes on a cluster (the spark store's
``mapInArrow``) runs on its executors for an ``executor="spark"`` asset: the same steps the
driver takes for a chunk — call the asset, check its columns and ids, attach the sample's
provenance, stamp the versions — then the columns in the table's order and types. It
holds no store, session or connection, so it pickles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from mxd_cli.definitions.asset import AssetContext, AssetDefinition
from mxd_cli.engine.assets import call_asset
from mxd_cli.engine.output import attach_provenance, check_columns, check_ids
from mxd_cli.engine.plan import CHANGE
from mxd_cli.engine.writer import Stamp
from mxd_cli.errors import AssetError


@dataclass(frozen=True)
class ChunkFunction:
    """The stamped output rows of one chunk of the increment, in ``schema``."""

    asset: AssetDefinition
    ctx: AssetContext
    id_columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    stamp: Stamp
    schema: pa.Schema
    chunk_size: int

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Every batch of a partition, re-cut into the asset's chunk size."""
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in batches:
            pending.append(batch)
            held += batch.num_rows
            while held >= self.chunk_size:
                table = pa.Table.from_batches(pending)
                yield from self.compute(table.slice(0, self.chunk_size))
                rest = table.slice(self.chunk_size)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            yield from self.compute(pa.Table.from_batches(pending))

    def compute(self, rows: pa.Table) -> Iterator[pa.RecordBatch]:
        chunk = pl.from_arrow(rows)
        assert isinstance(chunk, pl.DataFrame)
        chunk = chunk.drop(CHANGE, strict=False)
        frames = call_asset(self.asset, self.ctx, chunk)
        for frame in frames:
            check_columns(frame, self.asset)
        out = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        check_ids(out, self.id_columns, self.asset, chunk.schema)
        stamped = self.stamp(attach_provenance(out, chunk, self.key_columns, self.asset))
        yield from conform(stamped.to_arrow(), self.schema, self.asset).to_batches()


def conform(table: pa.Table, schema: pa.Schema, asset: AssetDefinition) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (the first chunk's output,
    as computed in the driver); a chunk whose columns differ is the asset's error."""
    names = set(table.column_names)
    missing = [n for n in schema.names if n not in names]
    extra = sorted(names - set(schema.names))
    if extra or [n for n in missing if not schema.field(n).nullable]:
        raise AssetError(
            f"asset {asset.name!r} of {asset.feature}: a chunk returned other columns than "
            f"the first (missing {', '.join(missing) or 'none'}; extra {', '.join(extra) or 'none'})",
            location=str(asset.origin),
        )
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in names
        else pa.nulls(table.num_rows, type=f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
