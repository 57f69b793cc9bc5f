"""What both tools are run on: a case is a list of steps, each the whole state to reach.

A :class:`Step` holds the graph (mxd specs; Metaxy gets their ``to_metaxy_dict()`` dumps),
every root's samples, and the soft deletes to apply before it runs. Cases come from two
sources: random ones drawn from the strategies of ``tests/engine/test_properties.py``
(extended with ``select`` and ``filters``, see :mod:`tests.interop.random_cases`) and
hand-made ones (:mod:`tests.interop.hand_made`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

import mxd_cli as mx

PROVENANCE_BY_FIELD = "metaxy_provenance_by_field"
DATA_VERSION_BY_FIELD = "metaxy_data_version_by_field"


@dataclass(frozen=True)
class SampleTable:
    """A root's samples: string columns (ids, user columns) and struct columns of strings."""

    strings: tuple[str, ...]
    structs: Mapping[str, tuple[str, ...]]
    rows: tuple[Mapping[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "strings": list(self.strings),
            "structs": {k: list(v) for k, v in self.structs.items()},
            "rows": [dict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleTable:
        structs = {k: tuple(v) for k, v in data["structs"].items()}
        return cls(tuple(data["strings"]), structs, tuple(data["rows"]))

    def to_polars(self) -> pl.DataFrame:
        schema: dict[str, pl.DataType] = {name: pl.String() for name in self.strings}
        for name, fields in self.structs.items():
            schema[name] = pl.Struct({f: pl.String for f in fields})
        return pl.DataFrame([dict(r) for r in self.rows], schema=schema)


@dataclass(frozen=True)
class Deletion:
    """Soft-delete the current rows of ``feature`` whose ``column`` is among ``values``."""

    feature: str
    column: str
    values: tuple[str, ...]

    @property
    def sql(self) -> str:
        quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in self.values)
        return f"{self.column} IN ({quoted})"


@dataclass(frozen=True)
class Expansion:
    """What the asset of a 1:N feature makes of a parent: child ids per parent id."""

    on: str
    column: str
    children: Mapping[str, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "column": self.column,
            "children": {k: list(v) for k, v in self.children.items()},
        }


@dataclass(frozen=True)
class Step:
    label: str
    specs: tuple[mx.FeatureSpec, ...]
    samples: Mapping[str, SampleTable]
    deletions: tuple[Deletion, ...] = ()

    def dumps(self) -> list[dict[str, Any]]:
        return [spec.to_metaxy_dict() for spec in self.specs]

    def id_columns(self) -> dict[str, tuple[str, ...]]:
        return {str(s.key): s.id_columns for s in self.specs}


@dataclass(frozen=True)
class Case:
    name: str
    algorithm: str
    length: int
    steps: tuple[Step, ...]
    expansions: Mapping[str, Expansion] = field(default_factory=dict)
    project: str = "interop"

    def graph(self, step: Step) -> dict[str, Any]:
        """The graph as the Metaxy driver takes it."""
        return {"project": self.project, "length": self.length, "features": step.dumps()}

    def describe(self) -> str:
        """Enough to rebuild the case by hand: every step's specs, samples and deletes."""
        lines = [f"case {self.name}: {self.algorithm}, truncation {self.length}"]
        shown: list[dict[str, Any]] = []
        for step in self.steps:
            lines.append(f"-- {step.label}")
            if step.dumps() != shown:
                shown = step.dumps()
                lines += [json.dumps(d, sort_keys=True) for d in shown]
            for root, table in step.samples.items():
                lines.append(f"samples {root}: {json.dumps([dict(r) for r in table.rows])}")
            lines += [f"soft delete {d.feature} where {d.sql}" for d in step.deletions]
        return "\n".join(lines)


def samples_json(samples: Mapping[str, SampleTable]) -> dict[str, Any]:
    return {root: table.to_json() for root, table in samples.items()}


def root_table(
    id_columns: Sequence[str],
    user: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    *,
    data_versions: bool = False,
) -> SampleTable:
    """A root's samples; ``user`` maps each user column to a value template over the ids
    (``"{sample_uid}/0"``)."""
    structs = {PROVENANCE_BY_FIELD: tuple(fields)}
    if data_versions:
        structs[DATA_VERSION_BY_FIELD] = tuple(fields)
    out = []
    for row in rows:
        full = {c: row[c] for c in id_columns}
        for column, template in user.items():
            full[column] = template.format(**full)
        for struct in structs:
            full[struct] = dict(row[struct])
        out.append(full)
    return SampleTable((*id_columns, *user), structs, tuple(out))
