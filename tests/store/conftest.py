"""Store fixtures: each backend on a fresh location, Metaxy-shaped rows, the golden stores."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mxd_cli.store import columns as c
from mxd_cli.store.base import MetadataStore
from mxd_cli.store.delta import DeltaStore
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.spark import SparkStore
from tests.golden import GOLDEN

GOLDEN_STORES = GOLDEN / "stores"

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)

OpenStore = Callable[..., MetadataStore]
MakeRows = Callable[..., pl.DataFrame]


def open_backend(backend: str, folder: Path, *, read_only: bool = False) -> MetadataStore:
    """A store of ``backend`` living under ``folder`` (nothing is created until a write)."""
    if backend == "duckdb":
        return DuckDBStore("test", {"database": str(folder / "s.duckdb")}, read_only=read_only)
    if backend == "spark":
        options = {"warehouse": str(folder / "spark"), "master": "local[2]"}
        return SparkStore("test", options, read_only=read_only)
    return DeltaStore("test", {"root_path": str(folder / "delta")}, read_only=read_only)


@pytest.fixture(params=["duckdb", "delta", pytest.param("spark", marks=pytest.mark.spark)])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def open_store(backend: str) -> OpenStore:
    """Open the parametrized backend at a folder of the test's choosing."""

    def open_(folder: Path, *, read_only: bool = False) -> MetadataStore:
        return open_backend(backend, folder, read_only=read_only)

    return open_


@pytest.fixture
def store(open_store: OpenStore, tmp_path: Path) -> Iterator[MetadataStore]:
    with open_store(tmp_path) as fresh:
        yield fresh


def rows(
    ids: Sequence[str],
    *,
    at: datetime = T0,
    feature_version: str = "fv1",
    project_version: str = "pv1",
    fields: Sequence[str] = ("audio", "frames"),
    tag: str = "v1",
    materialization_id: str | None = None,
) -> pl.DataFrame:
    """Rows in Metaxy's format: ``sample_uid``, user column ``path``, every system column.

    Field values are ``<field>-<id>-<tag>`` so a test can tell versions of a row apart.
    """
    n = len(ids)
    by_field = pl.Series(
        [{f: f"{f}-{i}-{tag}" for f in fields} for i in ids], dtype=c.struct_dtype(fields)
    )
    hashes = [f"p-{i}-{tag}" for i in ids]
    columns: dict[str, tuple[list[Any] | pl.Series, pl.DataType]] = {
        "sample_uid": (list(ids), pl.String()),
        "path": ([f"/data/{i}-{tag}.mp4" for i in ids], pl.String()),
        c.PROVENANCE_BY_FIELD: (by_field, by_field.dtype),
        c.PROVENANCE: (hashes, pl.String()),
        c.DATA_VERSION_BY_FIELD: (by_field, by_field.dtype),
        c.DATA_VERSION: (hashes, pl.String()),
        c.FEATURE_VERSION: ([feature_version] * n, pl.String()),
        c.PROJECT_VERSION: ([project_version] * n, pl.String()),
        c.CREATED_AT: ([at] * n, c.TIMESTAMP),
        c.UPDATED_AT: ([at] * n, c.TIMESTAMP),
        c.DELETED_AT: ([None] * n, c.TIMESTAMP),
        c.MATERIALIZATION_ID: ([materialization_id] * n, pl.String()),
    }
    return pl.DataFrame(
        [pl.Series(name, values, dtype=dtype) for name, (values, dtype) in columns.items()]
    )


@pytest.fixture
def make_rows() -> MakeRows:
    """:func:`rows` as a fixture, so test modules need not import conftest."""
    return rows


@cache
def _stores_json() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN_STORES / "stores.json").read_text())
    return data


_TIMESTAMP = re.compile(r"timestamp\[us(?:, tz=(.+))?\]")
_STRUCT = re.compile(r"struct<(.*)>")


def polars_dtype(arrow_type: str) -> pl.DataType:
    """The Polars type of one Arrow type string as stores.json spells it.

    DuckDB reports TIMESTAMPTZ in its session zone (``Etc/UTC`` for Metaxy's writer, ``UTC``
    for mxd's): both name the same instants, so both map to ``Datetime("us", "UTC")``.
    """
    if arrow_type == "string":
        return pl.String()
    if m := _TIMESTAMP.fullmatch(arrow_type):
        zone = m.group(1)
        return pl.Datetime("us", None if zone is None else "UTC")
    if m := _STRUCT.fullmatch(arrow_type):
        fields = [part.split(": ", 1) for part in m.group(1).split(", ")]
        return pl.Struct([pl.Field(name, polars_dtype(kind)) for name, kind in fields])
    raise AssertionError(f"no Polars type mapped for Arrow type {arrow_type!r}")


@pytest.fixture
def golden_schema() -> Callable[[str, str], pl.Schema]:
    """``golden_schema("delta", "demo/clean.delta")``: a table's schema as Metaxy wrote it."""

    def schema(kind: str, table: str) -> pl.Schema:
        columns = _stores_json()[kind]["dump"]["tables"][table]["arrow_schema"]
        return pl.Schema({col["name"]: polars_dtype(col["arrow_type"]) for col in columns})

    return schema
