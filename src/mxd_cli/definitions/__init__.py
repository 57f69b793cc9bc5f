"""Feature definitions: keys, specs, the BaseFeature class and the registry."""

from __future__ import annotations

from mxd_cli.definitions.asset import AssetContext, AssetDefinition, asset, file_version
from mxd_cli.definitions.feature import BaseFeature
from mxd_cli.definitions.keys import FeatureKey, FieldKey
from mxd_cli.definitions.registry import FeatureDefinition, Registry, collecting
from mxd_cli.definitions.spec import (
    ALL,
    FeatureDep,
    FeatureSpec,
    FieldDep,
    FieldsMapping,
    FieldSpec,
    Lineage,
    SpecialFieldDep,
    aggregation,
    expansion,
    identity,
)

__all__ = [
    "ALL",
    "AssetContext",
    "AssetDefinition",
    "BaseFeature",
    "FeatureDefinition",
    "FeatureDep",
    "FeatureKey",
    "FeatureSpec",
    "FieldDep",
    "FieldKey",
    "FieldSpec",
    "FieldsMapping",
    "Lineage",
    "Registry",
    "SpecialFieldDep",
    "aggregation",
    "asset",
    "collecting",
    "expansion",
    "file_version",
    "identity",
]
