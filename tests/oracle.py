"""A plain-Python reference for increments: dicts, sets, ``hashlib`` and ``xxhash``.

Written for clarity, not speed, and independent of mxd's engine: it reads a feature graph
only for its topological order, specs and each field's sorted parents, and computes every
version and hash itself (README recipes 1, 3 and 9-12) over its own model of the store.
Identity (1:1) lineage only.

Model of a feature table: ``(feature version, id) -> row``, where the row is the latest
one written for that id under that version (a soft delete marks it ``deleted``). A code
change that is later reverted therefore finds the old version's rows again, as the store's
"latest per id within the current feature version" rule does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import xxhash

from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.graph import FeatureGraph, FeatureNode

Id = tuple[str, ...]
"""A sample id: values of the feature's id columns, in ``id_columns`` order."""

Samples = Mapping[Id, Mapping[str, str]]
"""Root samples: id -> ``metaxy_provenance_by_field`` (struct key -> value)."""

ALGORITHMS = ("xxhash32", "xxhash64", "xxh3_64", "md5", "sha256")


class StoredRow(TypedDict):
    provenance_by_field: dict[str, str]
    provenance: str
    data_version_by_field: dict[str, str]
    feature_version: str
    deleted: bool


@dataclass(frozen=True)
class ExpectedRow:
    """What a sample of a feature should hold now."""

    provenance_by_field: dict[str, str]
    provenance: str


@dataclass
class OracleIncrement:
    new: dict[Id, ExpectedRow] = field(default_factory=dict)
    stale: dict[Id, ExpectedRow] = field(default_factory=dict)
    orphaned: set[Id] = field(default_factory=set)

    def to_compute(self) -> dict[Id, ExpectedRow]:
        return {**self.new, **self.stale}

    @property
    def empty(self) -> bool:
        return not (self.new or self.stale or self.orphaned)


def digest(text: str, algorithm: str) -> str:
    """The untruncated sample hash: xxhash as unsigned decimal, md5/sha256 as lowercase hex."""
    data = text.encode("utf-8")
    if algorithm == "xxhash32":
        return str(xxhash.xxh32_intdigest(data, seed=0))
    if algorithm == "xxhash64":
        return str(xxhash.xxh64_intdigest(data, seed=0))
    if algorithm == "xxh3_64":
        return str(xxhash.xxh3_64_intdigest(data, seed=0))
    if algorithm == "md5":
        return hashlib.md5(data).hexdigest()
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest()
    raise ValueError(f"the oracle has no {algorithm!r}")


def sample_hash(text: str, algorithm: str, length: int) -> str:
    return digest(text, algorithm)[:length]


def graph_hash(text: str, length: int) -> str:
    """Graph-level versions: always SHA-256 hex, truncated."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Oracle:
    """Increments and writes of a pipeline, one feature at a time or a whole step."""

    def __init__(self, graph: FeatureGraph, *, algorithm: str, length: int) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"the oracle has no {algorithm!r}")
        self.algorithm = algorithm
        self.length = length
        self.tables: dict[FeatureKey, dict[tuple[str, Id], StoredRow]] = {}
        self.use_graph(graph)

    # graph level -------------------------------------------------------------------------

    def use_graph(self, graph: FeatureGraph) -> None:
        """Switch to a (re)built graph, e.g. after a code-version change; the store stays."""
        for node in graph.nodes():
            for dep in node.spec.deps:
                if dep.lineage.kind != "1:1":
                    raise ValueError(f"the oracle supports 1:1 lineage only ({node.key})")
        self.graph = graph
        self.feature_versions = self._feature_versions(graph)

    def _feature_versions(self, graph: FeatureGraph) -> dict[FeatureKey, str]:
        field_versions: dict[str, str] = {}  # fully-qualified field key -> field version
        result: dict[FeatureKey, str] = {}
        for key in graph.order:
            node = graph[key]
            own: dict[str, str] = {}
            for spec in node.spec.fields:
                parents = "".join(field_versions[str(p)] for p in node.parent_fields[spec.key])
                fq = f"{key}.{spec.key}"
                own[str(spec.key)] = field_versions[fq] = graph_hash(
                    fq + spec.code_version + parents, self.length
                )
            text = "".join(name + own[name] for name in sorted(own))
            result[key] = graph_hash(text, self.length)
        return result

    # sample level ------------------------------------------------------------------------

    def _hash(self, text: str) -> str:
        return sample_hash(text, self.algorithm, self.length)

    def combined(self, node: FeatureNode, by_field: Mapping[str, str]) -> str:
        """Recipe 10: declared fields' values sorted by struct key, joined with '|'."""
        keys = sorted(f.key.struct_key for f in node.spec.fields)
        return self._hash("|".join(by_field[k] for k in keys))

    def current(self, key: FeatureKey) -> dict[Id, StoredRow]:
        """Stored, not deleted rows of the feature's current version."""
        version = self.feature_versions[key]
        table = self.tables.get(key, {})
        return {
            sid: row for (fv, sid), row in table.items() if fv == version and not row["deleted"]
        }

    def _upstream_rows(self, node: FeatureNode, upstream: FeatureKey) -> dict[Id, StoredRow]:
        """An upstream's current rows keyed by this feature's id (after the dep's renames)."""
        dep = next(d for d in node.spec.deps if d.feature == upstream)
        rename = dict(dep.rename or {})
        up_ids = self.graph[upstream].spec.id_columns
        rows: dict[Id, StoredRow] = {}
        for up_id, row in self.current(upstream).items():
            named = {rename.get(col, col): value for col, value in zip(up_ids, up_id, strict=True)}
            rows[tuple(named[col] for col in node.spec.id_columns)] = row
        return rows

    def expected(self, key: FeatureKey, samples: Samples | None = None) -> dict[Id, ExpectedRow]:
        node = self.graph[key]
        if node.is_root:
            if samples is None:
                raise ValueError(f"{key} is a root: it needs samples")
            return {
                sid: ExpectedRow(dict(by_field), self.combined(node, by_field))
                for sid, by_field in samples.items()
            }
        upstream = {d.feature: self._upstream_rows(node, d.feature) for d in node.spec.deps}
        required = [d.feature for d in node.spec.deps if not d.optional]
        if required:
            # inner join over required deps; optional ones are left-joined (add no ids)
            ids = set.intersection(*(set(upstream[k]) for k in required))
        else:
            # every dep optional: full outer join
            ids = set().union(*(set(rows) for rows in upstream.values()))
        result: dict[Id, ExpectedRow] = {}
        for sid in sorted(ids):
            by_field: dict[str, str] = {}
            for spec in node.spec.fields:
                parts = [str(spec.key), spec.code_version]
                for parent in node.parent_fields[spec.key]:
                    row = upstream[parent.feature].get(sid)
                    value = (
                        "" if row is None else row["data_version_by_field"][parent.field.struct_key]
                    )
                    parts += [str(parent), value]
                by_field[spec.key.struct_key] = self._hash("|".join(parts))
            result[sid] = ExpectedRow(by_field, self.combined(node, by_field))
        return result

    # increments and writes ---------------------------------------------------------------

    def resolve(self, key: FeatureKey, samples: Samples | None = None) -> OracleIncrement:
        expected = self.expected(key, samples)
        current = self.current(key)
        inc = OracleIncrement()
        for sid, row in expected.items():
            if sid not in current:
                inc.new[sid] = row
            elif current[sid]["provenance"] != row.provenance:
                inc.stale[sid] = row
        inc.orphaned = set(current) - set(expected)
        return inc

    def write(self, key: FeatureKey, rows: Mapping[Id, ExpectedRow]) -> None:
        """Store rows under the current feature version; data version = provenance."""
        version = self.feature_versions[key]
        table = self.tables.setdefault(key, {})
        for sid, row in rows.items():
            table[(version, sid)] = StoredRow(
                provenance_by_field=dict(row.provenance_by_field),
                provenance=row.provenance,
                data_version_by_field=dict(row.provenance_by_field),
                feature_version=version,
                deleted=False,
            )

    def soft_delete(self, key: FeatureKey, ids: Sequence[Id] | set[Id]) -> None:
        """Tombstone current rows (ids without a current row are ignored)."""
        version = self.feature_versions[key]
        table = self.tables.get(key, {})
        for sid in ids:
            row = table.get((version, sid))
            if row is not None:
                row["deleted"] = True

    def apply(self, key: FeatureKey, inc: OracleIncrement) -> None:
        """What a runner does with an increment: write new ∪ stale, tombstone orphans."""
        self.write(key, inc.to_compute())
        self.soft_delete(key, inc.orphaned)

    def run_step(self, samples: Mapping[FeatureKey, Samples]) -> dict[FeatureKey, OracleIncrement]:
        """One pipeline step: features in topological order, each resolved then applied."""
        result: dict[FeatureKey, OracleIncrement] = {}
        for key in self.graph.order:
            inc = self.resolve(key, samples.get(key) if self.graph[key].is_root else None)
            self.apply(key, inc)
            result[key] = inc
        return result
