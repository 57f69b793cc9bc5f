"""mxd: incremental, versioned feature pipelines from the command line.

The public API used in project modules::

    import mxd_cli as mx

    class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"])):
        pass

Importing this package loads neither typer nor rich (the CLI lives in ``mxd_cli.cli``).
"""

from __future__ import annotations

from mxd_cli.definitions import (
    ALL,
    AssetContext,
    BaseFeature,
    FeatureDep,
    FeatureKey,
    FeatureSpec,
    FieldDep,
    FieldKey,
    FieldsMapping,
    FieldSpec,
    Lineage,
    SpecialFieldDep,
    aggregation,
    asset,
    expansion,
    file_version,
    identity,
)
from mxd_cli.engine.increment import Increment
from mxd_cli.errors import (
    AssetError,
    ConfigError,
    DefinitionError,
    FilterError,
    MxdError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "ALL",
    "AssetContext",
    "AssetError",
    "BaseFeature",
    "ConfigError",
    "DefinitionError",
    "FeatureDep",
    "FeatureKey",
    "FeatureSpec",
    "FieldDep",
    "FieldKey",
    "FieldSpec",
    "FieldsMapping",
    "FilterError",
    "Increment",
    "Lineage",
    "MxdError",
    "SpecialFieldDep",
    "StoreError",
    "__version__",
    "aggregation",
    "asset",
    "expansion",
    "file_version",
    "identity",
]
