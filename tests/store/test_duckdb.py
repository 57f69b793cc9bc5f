"""DuckDB backend: in-memory databases, waiting for another process, Metaxy's own store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from mxd_cli.errors import StoreError
from mxd_cli.store import columns as c
from mxd_cli.store.base import FEATURE_VERSIONS
from mxd_cli.store.duckdb import DuckDBStore

from .conftest import GOLDEN_STORES, MakeRows

RAW = ("demo", "raw")
CLEAN = ("demo", "clean")

# Opens the database read-write (taking DuckDB's file lock), says so, holds it, lets go.
HOLDER = textwrap.dedent(
    """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def test_an_in_memory_database_keeps_its_rows(make_rows: MakeRows) -> None:
    with DuckDBStore("mem", {"database": ":memory:"}) as store:
        store.append(RAW, make_rows(["s1", "s2"]))

        frame = store.read(RAW, ["sample_uid"])

        assert store.location() == ":memory:"
        assert store.tables() == {"demo__raw"}
        assert frame is not None
        assert frame.collect()["sample_uid"].sort().to_list() == ["s1", "s2"]


def test_duckdb_memory_is_bounded_unless_the_store_says_otherwise(tmp_path: Path) -> None:
    def limit(options: dict[str, object]) -> str:
        with DuckDBStore("s", {"database": str(tmp_path / "s.duckdb"), **options}) as store:
            rows = store.engine().rows("SELECT current_setting('memory_limit')")
        return str(rows[0][0])

    # (DuckDB's own default is 80% of the machine: a run's memory would grow with N.)
    assert limit({}) == "953.6 MiB"  # 1GB, as DuckDB prints it
    assert limit({"config": {"memory_limit": "4GB"}}) == "3.7 GiB"


def test_no_connection_draws_duckdbs_own_progress_bar(tmp_path: Path) -> None:
    """DuckDB draws a progress bar on the terminal for a query past 2 s (on stderr, even
    under --json); every connection and cursor mxd opens turns it off, and reads in UTC."""
    from mxd_cli.store.delta import DeltaStore

    asked = "SELECT current_setting('enable_progress_bar'), current_setting('TimeZone')"
    with DuckDBStore("s", {"database": str(tmp_path / "s.duckdb")}) as store:
        engine = store.engine()
        assert engine.rows(asked) == [(False, "UTC")]
        assert engine.side_arrow(asked).to_pylist()[0] == {
            "current_setting('enable_progress_bar')": False,
            "current_setting('TimeZone')": "UTC",
        }
        assert store._writer_con().execute(asked).fetchall() == [(False, "UTC")]
    with DeltaStore("d", {"root_path": str(tmp_path / "delta")}) as delta:
        assert delta.engine().rows(asked) == [(False, "UTC")]


@pytest.fixture
def held_database(tmp_path: Path, make_rows: MakeRows) -> Iterator[Callable[[float], Path]]:
    """A database file with one table, and a way to have another process hold it."""
    database = tmp_path / "s.duckdb"
    with DuckDBStore("w", {"database": str(database)}) as writer:
        writer.append(RAW, make_rows(["s1"]))
    holders: list[subprocess.Popen[str]] = []

    def hold(seconds: float) -> Path:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        return database

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_a_reader_waits_for_a_writer_in_another_process(
    held_database: Callable[[float], Path],
) -> None:
    database = held_database(1.5)

    with DuckDBStore("r", {"database": str(database)}, read_only=True, busy_timeout=10) as reader:
        frame = reader.scan(RAW)

    assert frame is not None
    assert frame.collect()["sample_uid"].to_list() == ["s1"]


def test_a_reader_gives_up_after_its_busy_timeout(
    held_database: Callable[[float], Path],
) -> None:
    database = held_database(5)

    reader = DuckDBStore("r", {"database": str(database)}, read_only=True, busy_timeout=0.2)
    with pytest.raises(StoreError, match="cannot open DuckDB store") as caught:
        reader.scan(RAW)

    assert caught.value.hint is not None
    assert "another mxd process" in caught.value.hint


@pytest.fixture
def golden_duckdb(tmp_path: Path) -> Iterator[DuckDBStore]:
    """A private read-write copy of the DuckDB store Metaxy wrote."""
    copy = tmp_path / "chain.duckdb"
    shutil.copyfile(GOLDEN_STORES / "chain.duckdb", copy)
    store = DuckDBStore("golden", {"database": str(copy)})
    yield store
    store.close()


def test_metaxy_store_reads_as_metaxy_read_it(
    golden_duckdb: DuckDBStore, golden_schema: Callable[[str, str], pl.Schema]
) -> None:
    scanned = golden_duckdb.scan(CLEAN)
    current = golden_duckdb.read(CLEAN, ["sample_uid"], feature_version="8c0e1404")

    assert golden_duckdb.tables() == {
        "demo__raw",
        "demo__clean",
        "metaxy_system__feature_versions",
    }
    assert scanned is not None
    assert scanned.collect().height == 5
    assert current is not None
    assert current.collect()["sample_uid"].sort().to_list() == ["s1", "s3", "s4"]
    for table in (RAW, CLEAN, FEATURE_VERSIONS):
        frame = golden_duckdb.scan(table)
        assert frame is not None
        name = golden_duckdb.physical_name(table)
        assert frame.collect_schema() == golden_schema("duckdb", name), name


def test_metaxy_store_takes_new_rows(golden_duckdb: DuckDBStore, make_rows: MakeRows) -> None:
    s2 = make_rows(
        ["s2"],
        at=datetime.now(timezone.utc),
        feature_version="8c0e1404",
        project_version="e84941a9",
        fields=("audio", "summary"),
    )
    golden_duckdb.append(CLEAN, s2)

    current = golden_duckdb.read(CLEAN, ["sample_uid"], feature_version="8c0e1404")

    assert current is not None
    assert current.collect()["sample_uid"].sort().to_list() == ["s1", "s2", "s3", "s4"]


def test_metaxy_system_table_takes_naive_timestamps(golden_duckdb: DuckDBStore) -> None:
    stored = golden_duckdb.scan(FEATURE_VERSIONS)
    assert stored is not None
    recorded = datetime(2025, 6, 1, 8, 30)
    row = (
        stored.collect()
        .head(1)
        .with_columns(
            pl.lit("other").alias("project"),
            pl.lit(recorded, dtype=pl.Datetime("us")).alias("recorded_at"),
        )
    )

    golden_duckdb.append(FEATURE_VERSIONS, row)

    again = golden_duckdb.scan(FEATURE_VERSIONS)
    assert again is not None
    got = again.filter(pl.col("project") == "other").collect()
    assert got.schema == c.FEATURE_VERSIONS_SCHEMA
    assert got["recorded_at"].to_list() == [recorded]
