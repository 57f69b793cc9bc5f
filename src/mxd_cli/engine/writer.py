"""Writing a feature's rows in Metaxy's format: system columns, data versions, snapshots."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from mxd_cli import __version__
from mxd_cli.engine.provenance import with_data_versions
from mxd_cli.graph import FeatureNode
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS, MetadataStore, now_utc
from mxd_cli.versioning import GraphVersions, sha256_truncated


class FeatureWriter:
    """Appends rows of one feature, stamped with the current versions and one timestamp."""

    def __init__(
        self,
        store: MetadataStore,
        node: FeatureNode,
        versions: GraphVersions,
        *,
        project: str,
        algorithm: str,
        length: int,
        materialization_id: str | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.versions = versions
        self.project = project
        self.algorithm = algorithm
        self.length = length
        self.materialization_id = materialization_id
        self._snapshot_done = False

    @property
    def feature_version(self) -> str:
        return self.versions.feature_version(self.node.key)

    def stamp(self, rows: pl.DataFrame, at: datetime) -> pl.DataFrame:
        """Rows with provenance, ready to append: data versions and system columns set."""
        frame = with_data_versions(rows.lazy(), self.node, self.algorithm, self.length)
        internal = [n for n in frame.collect_schema().names() if n.startswith("__mxd")]
        return (
            frame.drop(internal)
            .with_columns(
                pl.lit(self.feature_version, dtype=pl.String).alias(c.FEATURE_VERSION),
                pl.lit(self.versions.project_version, dtype=pl.String).alias(c.PROJECT_VERSION),
                pl.lit(at, dtype=c.TIMESTAMP).alias(c.CREATED_AT),
                pl.lit(at, dtype=c.TIMESTAMP).alias(c.UPDATED_AT),
                pl.lit(None, dtype=c.TIMESTAMP).alias(c.DELETED_AT),
                pl.lit(self.materialization_id, dtype=pl.String).alias(c.MATERIALIZATION_ID),
            )
            .collect()
        )

    def write(self, rows: pl.DataFrame, at: datetime | None = None) -> int:
        """Append computed rows (they carry provenance columns); return how many."""
        if rows.height == 0:
            return 0
        self.record_snapshot()
        self.store.append(self.node.key.parts, self.stamp(rows, at or now_utc()))
        return rows.height

    def soft_delete(self, rows: pl.DataFrame, at: datetime | None = None) -> int:
        """Tombstone current rows (as read from the store)."""
        return self.store.soft_delete(
            self.node.key.parts,
            rows,
            feature_version=self.feature_version,
            project_version=self.versions.project_version,
            at=at,
            materialization_id=self.materialization_id,
        )

    def record_snapshot(self) -> None:
        """Add a ``feature_versions`` row the first time this feature version is written."""
        if self._snapshot_done:
            return
        self._snapshot_done = True
        key = str(self.node.key)
        existing = self.store.scan(FEATURE_VERSIONS)
        if existing is not None:
            found = (
                existing.filter(
                    (pl.col("project") == self.project)
                    & (pl.col("feature_key") == key)
                    & (pl.col("metaxy_feature_version") == self.feature_version)
                )
                .select(pl.len())
                .collect()
                .item()
            )
            if found:
                return
        self.store.append(FEATURE_VERSIONS, self.snapshot_row())

    def snapshot_row(self) -> pl.DataFrame:
        node, versions = self.node, self.versions
        spec_json = json.dumps(node.spec.to_metaxy_dict())
        schema = {
            "id_columns": list(node.spec.id_columns),
            "columns": list(node.definition.columns),
        }
        schema_json = json.dumps(schema)
        definition_version = sha256_truncated(
            versions[node.key].feature_spec_version + json.dumps(schema, sort_keys=True),
            versions.truncation,
        )
        cls = node.definition.cls
        class_path = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else ""
        row = {
            "project": self.project,
            "feature_key": str(node.key),
            "metaxy_feature_version": self.feature_version,
            "metaxy_definition_version": definition_version,
            "recorded_at": now_utc().replace(tzinfo=None),
            "feature_spec": spec_json,
            "feature_schema": schema_json,
            "feature_class_path": class_path,
            "metaxy_project_version": versions.project_version,
            "tags": json.dumps({"mxd": json.dumps({"version": __version__})}),
            "deleted_at": None,
        }
        return pl.DataFrame([row], schema=c.FEATURE_VERSIONS_SCHEMA)
