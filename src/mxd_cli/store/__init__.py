"""Metadata stores: the interface, the DuckDB and Delta Lake backends, and opening by config."""

from __future__ import annotations

from mxd_cli.config import StoreConfig
from mxd_cli.store.base import FEATURE_VERSIONS, OBSERVATIONS, RUNS, MetadataStore, Table


def open_store(config: StoreConfig, *, read_only: bool = False) -> MetadataStore:
    """Open the backend a store config names (imports the backend lazily)."""
    if config.type == "duckdb":
        from mxd_cli.store.duckdb import DuckDBStore

        return DuckDBStore(config.name, config.options, read_only=read_only)
    from mxd_cli.store.delta import DeltaStore

    return DeltaStore(config.name, config.options, read_only=read_only)


__all__ = ["FEATURE_VERSIONS", "OBSERVATIONS", "RUNS", "MetadataStore", "Table", "open_store"]
