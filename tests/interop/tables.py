"""Reading a store's feature tables straight from its files, with neither tool's code.

The physical rows of a feature, and its current rows by the format's rule (golden README,
"Increments"): rows of the current feature version, the latest per id by
``coalesce(metaxy_deleted_at, metaxy_updated_at)``, soft-deleted ones dropped. Both tools'
stores are read this way, so the comparison does not trust either tool's reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

Id = tuple[str, ...]

HASHES = (
    "metaxy_provenance",
    "metaxy_provenance_by_field",
    "metaxy_data_version",
    "metaxy_data_version_by_field",
    "metaxy_feature_version",
)


@dataclass(frozen=True)
class StoreFiles:
    """Where a store lives: ``backend`` is ``duckdb`` (a file) or ``delta`` (a folder)."""

    backend: str
    path: Path

    def tables(self, keys: Sequence[str]) -> dict[str, pl.DataFrame | None]:
        """Every row ever written for each feature of ``keys`` (None: no table yet), read
        through one connection (opening a DuckDB file costs tens of milliseconds)."""
        if self.backend == "duckdb":
            if not self.path.exists():
                return dict.fromkeys(keys)
            with duckdb.connect(str(self.path), read_only=True) as con:
                present = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
                return {
                    key: con.sql(f'SELECT * FROM "{table}"').pl() if table in present else None
                    for key in keys
                    for table in [_table_name(key)]
                }
        out: dict[str, pl.DataFrame | None] = {}
        for key in keys:
            parts = key.split("/")
            folder = self.path.joinpath(*parts[:-1], f"{parts[-1]}.delta")
            out[key] = pl.read_delta(str(folder)) if (folder / "_delta_log").exists() else None
        return out


def _table_name(key: str) -> str:
    return key.replace("/", "__").replace("-", "_")


def current(frame: pl.DataFrame | None, feature_version: str, ids: Sequence[str]) -> pl.DataFrame:
    """The current rows of a physical table under ``feature_version``."""
    if frame is None or frame.height == 0:
        return pl.DataFrame()
    latest = pl.coalesce("metaxy_deleted_at", "metaxy_updated_at")
    return (
        frame.filter(pl.col("metaxy_feature_version") == feature_version)
        .with_columns(latest.alias("__latest"))
        .sort("__latest", maintain_order=True)
        .group_by(list(ids), maintain_order=True)
        .last()
        .filter(pl.col("metaxy_deleted_at").is_null())
        .drop("__latest")
    )


def by_id(frame: pl.DataFrame, ids: Sequence[str]) -> dict[Id, dict[str, Any]]:
    """Rows keyed by their ids, with the hash columns only."""
    if frame.height == 0:
        return {}
    rows = frame.select(*ids, *HASHES).to_dicts()
    return {tuple(str(r[i]) for i in ids): {h: r[h] for h in HASHES} for r in rows}


def rows_by_id(rows: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> dict[Id, dict[str, Any]]:
    """The same shape from rows given as dicts (the Metaxy driver's answers)."""
    return {tuple(str(r[i]) for i in ids): {h: r[h] for h in HASHES} for r in rows}
