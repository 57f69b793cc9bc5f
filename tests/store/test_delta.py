"""Delta backend: layouts, options, what lands on disk, and Metaxy's own Delta store."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from sqlglot import exp

from mxd_cli.errors import ConfigError, StoreError
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS, RUNS
from mxd_cli.store.delta import DeltaStore

from .conftest import GOLDEN_STORES, MakeRows

RAW = ("demo", "raw")
CLEAN = ("demo", "clean")


def delta_store(root: Path | str, **options: object) -> DeltaStore:
    return DeltaStore("lake", {"root_path": str(root), **options})


@pytest.mark.parametrize(
    ("layout", "names"),
    [
        (
            "nested",
            ["demo/raw.delta", "metaxy-system/feature_versions.delta", "__mxd/runs.delta"],
        ),
        ("flat", ["demo__raw.delta", "metaxy_system__feature_versions.delta", "__mxd__runs.delta"]),
    ],
)
def test_layouts_name_tables_as_metaxy_does(
    tmp_path: Path, make_rows: MakeRows, layout: str, names: list[str]
) -> None:
    store = delta_store(tmp_path, layout=layout)
    tables = [RAW, FEATURE_VERSIONS, RUNS]

    for table in tables:
        store.append(table, make_rows(["s1"]))

    assert [store.physical_name(t) for t in tables] == names
    assert store.tables() == set(names)
    for name in names:
        assert (tmp_path.joinpath(*name.split("/")) / "_delta_log").is_dir()


def test_a_file_uri_root_is_a_local_folder(tmp_path: Path, make_rows: MakeRows) -> None:
    store = delta_store(tmp_path.as_uri())

    store.append(RAW, make_rows(["s1"]))

    assert (tmp_path / "demo" / "raw.delta" / "_delta_log").is_dir()
    assert store.tables() == {"demo/raw.delta"}
    assert store.location() == tmp_path.as_uri()


def test_an_object_store_root_addresses_tables_without_listing() -> None:
    store = delta_store("s3://bucket/features/", storage_options={"AWS_ALLOW_HTTP": True})

    assert store.table_uri(RAW) == "s3://bucket/features/demo/raw.delta"
    assert store.tables() == set()  # object storage is not listed; has() asks per table
    assert store.storage_options == {"AWS_ALLOW_HTTP": "true"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "store 'lake': the delta option 'root_path' is required"),
        ({"root_path": "/x", "layout": "deep"}, "store 'lake': option 'layout' must be one of"),
        ({"root_path": "/x", "rootpath": "/y"}, "store 'lake': unknown delta option 'rootpath'"),
        ({"root_path": "/x", "storage_options": "k=v"}, "option 'storage_options' must be a"),
        ({"root_path": "/x", "storage_options": {"k": [1]}}, "storage_options.k must be"),
    ],
)
def test_invalid_options_name_the_store_and_option(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DeltaStore("lake", options)


def test_an_unknown_option_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as caught:
        DeltaStore("lake", {"root_path": "/x", "storage_option": {}})

    assert caught.value.hint == "did you mean 'storage_options'?"


def test_appending_adds_files_and_never_rewrites_them(tmp_path: Path, make_rows: MakeRows) -> None:
    store = delta_store(tmp_path)
    store.append(RAW, make_rows(["s1"]))
    folder = tmp_path / "demo" / "raw.delta"
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}

    store.append(RAW, make_rows(["s2"]).with_columns(pl.lit(1).alias("extra")))

    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    assert len(after) == len(before) + 1
    assert {name: after[name] for name in before} == before
    assert DeltaTable(str(folder)).version() == 1


def test_files_are_split_into_row_groups_duckdb_scans_in_parallel(
    tmp_path: Path, make_rows: MakeRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr("mxd_cli.store.delta.ROW_GROUP_ROWS", 4)
    store = delta_store(tmp_path)
    store.append(RAW, make_rows([f"s{i}" for i in range(10)]))

    (file,) = (tmp_path / "demo" / "raw.delta").glob("*.parquet")
    meta = pq.ParquetFile(file).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]
    assert meta.row_group(0).column(0).compression == "SNAPPY"  # (deltalake's default kept)


def test_a_query_is_appended_in_one_commit_streamed_in_batches(
    tmp_path: Path, make_rows: MakeRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mxd_cli.store.delta as delta

    store = delta_store(tmp_path)
    store.append(RAW, make_rows(["s0"]))
    before = DeltaTable(str(tmp_path / "demo" / "raw.delta")).version()
    monkeypatch.setattr(delta, "ROW_GROUP_ROWS", 4)
    prepared: list[int] = []
    writable = delta._writable

    def spy(frame: pl.DataFrame, stored: object) -> pl.DataFrame:
        prepared.append(frame.height)
        return writable(frame, stored)  # type: ignore[arg-type]

    monkeypatch.setattr(delta, "_writable", spy)
    staged = store.engine().register(make_rows([f"s{i}" for i in range(1, 11)]))
    query = exp.select("*", exp.alias_(exp.null(), "extra")).from_(staged)

    assert store.append_query(RAW, query) == 10

    assert prepared == [4, 4, 2]  # (batch by batch, never the whole result)
    assert DeltaTable(str(tmp_path / "demo" / "raw.delta")).version() == before + 1
    read = pl.from_arrow(DeltaTable(str(tmp_path / "demo" / "raw.delta")).to_pyarrow_table())
    assert isinstance(read, pl.DataFrame) and read.height == 11
    assert "extra" not in read.columns  # (all null and unknown to the table: left out)
    assert read.schema[c.UPDATED_AT] == pl.Datetime("us", "UTC")
    empty = exp.select("*").from_(staged).where(exp.false())
    assert store.append_query(RAW, empty) == 0
    assert DeltaTable(str(tmp_path / "demo" / "raw.delta")).version() == before + 1


def test_the_engine_is_bounded_like_a_duckdb_store_and_spills_to_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.chdir(tmp_path)
    spill_root = tmp_path / "system-tmp"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))
    monkeypatch.setattr("mxd_cli.store.delta.DEFAULT_SETTINGS", {"memory_limit": "64MB"})
    store = delta_store(tmp_path / "lake")
    con = store.engine().con

    (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone() or ("",)
    assert limit == "61.0 MiB"  # (64MB, as DuckDB shows it)
    # A table and a sort several times the limit complete by spilling, into the system's
    # temp dir.
    con.execute(
        "CREATE TEMP TABLE big AS SELECT md5(i::VARCHAR) || md5((i * 7)::VARCHAR) AS s "
        "FROM range(3000000) t(i)"
    )
    ranked = "SELECT max(n) FROM (SELECT row_number() OVER (ORDER BY s DESC) AS n FROM big)"
    assert con.execute(ranked).fetchone() == (3_000_000,)
    spilled = [p for p in spill_root.iterdir() if p.name.startswith("mxd-duckdb-")]
    assert spilled and any(spilled[0].iterdir())
    store.close()
    assert not any(p.name.startswith("mxd-duckdb-") for p in spill_root.iterdir())
    assert not (tmp_path / ".tmp").exists()  # (DuckDB's default: the working directory)


def test_feature_tables_keep_the_basic_protocol(tmp_path: Path, make_rows: MakeRows) -> None:
    store = delta_store(tmp_path)

    store.append(RAW, make_rows(["s1"]))

    protocol = DeltaTable(store.table_uri(RAW)).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)


@pytest.mark.parametrize(
    ("column", "value"), [(c.CREATED_AT, "yesterday"), (c.PROVENANCE_BY_FIELD, "not a struct")]
)
def test_a_value_delta_cannot_cast_is_a_store_error(
    tmp_path: Path, make_rows: MakeRows, column: str, value: str
) -> None:
    # deltalake casts what it can into the stored type (1.5 into a timestamp passes).
    store = delta_store(tmp_path)
    store.append(RAW, make_rows(["s1"]))

    with pytest.raises(StoreError, match="cannot write Delta table"):
        store.append(RAW, make_rows(["s2"]).with_columns(pl.lit(value).alias(column)))

    assert store.tables() == {"demo/raw.delta"}
    assert DeltaTable(store.table_uri(RAW)).version() == 0


@pytest.fixture
def golden_delta(tmp_path: Path) -> DeltaStore:
    """A private copy of the Delta store Metaxy wrote (nested layout)."""
    root = tmp_path / "chain_delta"
    shutil.copytree(GOLDEN_STORES / "chain_delta", root)
    return DeltaStore("golden", {"root_path": str(root), "layout": "nested"})


def test_metaxy_store_reads_as_metaxy_read_it(
    golden_delta: DeltaStore, golden_schema: Callable[[str, str], pl.Schema]
) -> None:
    scanned = golden_delta.scan(CLEAN)
    current = golden_delta.read(CLEAN, ["sample_uid"], feature_version="8c0e1404")

    assert golden_delta.tables() == {
        "demo/raw.delta",
        "demo/clean.delta",
        "metaxy-system/feature_versions.delta",
    }
    assert golden_delta.has(FEATURE_VERSIONS)
    assert scanned is not None
    assert scanned.collect().height == 5
    assert current is not None
    assert current.collect()["sample_uid"].sort().to_list() == ["s1", "s3", "s4"]
    for table in (RAW, CLEAN, FEATURE_VERSIONS):
        frame = golden_delta.scan(table)
        assert frame is not None
        name = golden_delta.physical_name(table)
        assert frame.collect_schema() == golden_schema("delta", name), name


def test_metaxy_store_takes_new_rows(
    golden_delta: DeltaStore, make_rows: MakeRows, golden_schema: Callable[[str, str], pl.Schema]
) -> None:
    s2 = make_rows(
        ["s2"],
        at=datetime.now(timezone.utc),
        feature_version="8c0e1404",
        project_version="e84941a9",
        fields=("audio", "summary"),
    )
    golden_delta.append(CLEAN, s2)

    current = golden_delta.read(CLEAN, ["sample_uid"], feature_version="8c0e1404")

    assert current is not None
    assert current.collect()["sample_uid"].sort().to_list() == ["s1", "s2", "s3", "s4"]
    assert current.collect_schema() == golden_schema("delta", "demo/clean.delta")
    protocol = DeltaTable(golden_delta.table_uri(CLEAN)).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)


def test_metaxy_system_table_takes_naive_timestamps(golden_delta: DeltaStore) -> None:
    stored = golden_delta.scan(FEATURE_VERSIONS)
    assert stored is not None
    recorded = datetime(2025, 6, 1, 8, 30)
    first = stored.collect().head(1)
    naive = first.with_columns(
        pl.lit("naive").alias("project"),
        pl.lit(recorded, dtype=pl.Datetime("us")).alias("recorded_at"),
    )
    # A tz-aware time written into the naive column lands as UTC wall-clock time.
    aware = first.with_columns(
        pl.lit("aware").alias("project"),
        pl.lit(recorded.replace(tzinfo=timezone.utc), dtype=c.TIMESTAMP).alias("recorded_at"),
    )

    golden_delta.append(FEATURE_VERSIONS, naive)
    golden_delta.append(FEATURE_VERSIONS, aware)

    again = golden_delta.scan(FEATURE_VERSIONS)
    assert again is not None
    got = again.filter(pl.col("project").is_in(["naive", "aware"])).collect()
    assert got.schema == c.FEATURE_VERSIONS_SCHEMA
    assert got["recorded_at"].to_list() == [recorded, recorded]
    protocol = DeltaTable(golden_delta.table_uri(FEATURE_VERSIONS)).protocol()
    assert protocol.reader_features == ["timestampNtz"]
    assert protocol.writer_features == ["timestampNtz"]
