"""Metadata stores: the interface, the registered backends, and opening by config."""

from __future__ import annotations

from mxd_cli.config import StoreConfig
from mxd_cli.errors import ConfigError
from mxd_cli.store.base import FEATURE_VERSIONS, OBSERVATIONS, RUNS, MetadataStore, Table


def open_store(config: StoreConfig, *, read_only: bool = False) -> MetadataStore:
    """Open the backend a store config names (the backend's libraries load only now)."""
    from mxd_cli.store.registry import find

    backend = find(config.type)
    if backend is None:
        raise ConfigError(f"unknown store type '{config.type}' for store '{config.name}'")
    return backend.open(config, read_only=read_only)


__all__ = ["FEATURE_VERSIONS", "OBSERVATIONS", "RUNS", "MetadataStore", "Table", "open_store"]
