"""System columns of Metaxy's store format and their types."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow as pa

PROVENANCE_BY_FIELD = "metaxy_provenance_by_field"
PROVENANCE = "metaxy_provenance"
DATA_VERSION_BY_FIELD = "metaxy_data_version_by_field"
DATA_VERSION = "metaxy_data_version"
FEATURE_VERSION = "metaxy_feature_version"
PROJECT_VERSION = "metaxy_project_version"
CREATED_AT = "metaxy_created_at"
UPDATED_AT = "metaxy_updated_at"
DELETED_AT = "metaxy_deleted_at"
MATERIALIZATION_ID = "metaxy_materialization_id"

TIMESTAMP = pl.Datetime("us", "UTC")

# Every system column of a feature table, in Metaxy's order.
SYSTEM_COLUMNS = (
    PROVENANCE_BY_FIELD,
    PROVENANCE,
    DATA_VERSION_BY_FIELD,
    DATA_VERSION,
    FEATURE_VERSION,
    PROJECT_VERSION,
    CREATED_AT,
    UPDATED_AT,
    DELETED_AT,
    MATERIALIZATION_ID,
)
# The ones mxd stamps when writing (anything an asset returns for them is replaced).
STAMPED_COLUMNS = SYSTEM_COLUMNS[3:]


def is_system_column(name: str) -> bool:
    return name.startswith("metaxy_")


def struct_dtype(struct_keys: Sequence[str]) -> pl.Struct:
    return pl.Struct([pl.Field(k, pl.String) for k in struct_keys])


# Metaxy's system table of graph snapshots, written when a feature version is new.
FEATURE_VERSIONS_KEY = ("metaxy-system", "feature_versions")
FEATURE_VERSIONS_SCHEMA: dict[str, pl.DataType] = {
    "project": pl.String(),
    "feature_key": pl.String(),
    "metaxy_feature_version": pl.String(),
    "metaxy_definition_version": pl.String(),
    "recorded_at": pl.Datetime("us"),  # naive, UTC wall-clock (as Metaxy writes it)
    "feature_spec": pl.String(),
    "feature_schema": pl.String(),
    "feature_class_path": pl.String(),
    "metaxy_project_version": pl.String(),
    "tags": pl.String(),
    "deleted_at": pl.Datetime("us"),
}


def polars_types(schema: pa.Schema) -> dict[str, pl.DataType]:
    """The Polars type of each column of an Arrow schema (read off an empty table: given
    an array, Polars imports ``pyarrow.compute``, 0.1-0.4 s, and ``pa.array`` pandas)."""
    frame = pl.from_arrow(pa.Table.from_batches([], schema=schema))
    assert isinstance(frame, pl.DataFrame)
    return dict(frame.schema)
