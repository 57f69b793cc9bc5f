"""Graph-level versions (no data): field, feature, feature-code, spec and project versions.

The recipes are Metaxy's (see ``shared/golden/README.md``, recipes 1-6): SHA-256 hex of a
plain concatenation, truncated to ``hash_truncation_length`` characters, with parents
entering already truncated. The project version is mxd's own recipe (Metaxy's depends on
its Pydantic schema): ``T(H(key1 + spec_version1 + key2 + spec_version2 ...))`` over the
features sorted by key parts. It changes whenever any feature's spec changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from mxd_cli.definitions.keys import FeatureKey, FieldKey
from mxd_cli.graph import FeatureGraph, FieldRef

DEFAULT_TRUNCATION = 8


def sha256_truncated(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class FeatureVersions:
    """Versions of one feature."""

    field_versions: Mapping[FieldKey, str]
    feature_version: str
    feature_code_version: str
    feature_spec_version: str


class GraphVersions:
    """Every graph-level version of a feature graph, computed once."""

    def __init__(self, graph: FeatureGraph, truncation: int = DEFAULT_TRUNCATION) -> None:
        self.truncation = truncation
        field_versions: dict[FieldRef, str] = {}
        features: dict[FeatureKey, FeatureVersions] = {}
        for node in graph.nodes():  # topological: parents are always computed first
            spec = node.spec
            own: dict[FieldKey, str] = {}
            for field in spec.fields:
                ref = FieldRef(node.key, field.key)
                parents = "".join(field_versions[p] for p in node.parent_fields[field.key])
                version = self._t(f"{ref}{field.code_version}{parents}")
                field_versions[ref] = own[field.key] = version
            by_key = sorted(spec.fields, key=lambda f: str(f.key))
            features[node.key] = FeatureVersions(
                field_versions=own,
                feature_version=self._t("".join(f"{f.key}{own[f.key]}" for f in by_key)),
                feature_code_version=self._t("".join(f"{f.key}{f.code_version}" for f in by_key)),
                feature_spec_version=self._t(json.dumps(spec.to_metaxy_dict(), sort_keys=True)),
            )
        self._features = features
        self.project_version = self._t(
            "".join(f"{k}{features[k].feature_spec_version}" for k in sorted(features))
        )

    def _t(self, text: str) -> str:
        return sha256_truncated(text, self.truncation)

    def __getitem__(self, key: FeatureKey) -> FeatureVersions:
        return self._features[key]

    def feature_version(self, key: FeatureKey) -> str:
        return self._features[key].feature_version
