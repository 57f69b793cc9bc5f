"""The store contract and the shared read/delete rules, run against every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlglot import exp

from mxd_cli.errors import StoreError
from mxd_cli.store import columns as c
from mxd_cli.store.base import RUNS, MetadataStore, Table

from .conftest import MakeRows, OpenStore

RAW: Table = ("demo", "raw")
ID = ["sample_uid"]
T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(hours=3)


def physical(store: MetadataStore, table: Table = RAW) -> pl.DataFrame:
    frame = store.scan(table)
    assert frame is not None
    return frame.collect()


def current(
    store: MetadataStore, *, feature_version: str | None = None, include_deleted: bool = False
) -> pl.DataFrame:
    frame = store.read(RAW, ID, feature_version=feature_version, include_deleted=include_deleted)
    assert frame is not None
    return frame.collect().sort(ID)


def test_append_then_scan_keeps_values_and_dtypes(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    frame = make_rows(["s1", "s2"], materialization_id="run-1").with_columns(
        pl.Series("n", [1, 2], dtype=pl.Int64),
        pl.Series(c.DELETED_AT, [None, T1], dtype=c.TIMESTAMP),
    )
    store.append(RAW, frame)

    assert_frame_equal(physical(store).sort(ID), frame)


def test_a_missing_table_reads_as_none(store: MetadataStore) -> None:
    assert store.scan(RAW) is None
    assert store.read(RAW, ID) is None
    assert not store.has(RAW)
    assert store.tables() == set()


def test_has_and_tables_name_what_was_written(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1"]))
    store.append(RUNS, pl.DataFrame({"run_id": ["r1"]}))

    assert store.has(RAW)
    assert store.has(RUNS)
    assert not store.has(("demo", "clean"))
    assert store.tables() == {store.physical_name(RAW), store.physical_name(RUNS)}


def test_an_extra_column_is_added(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1"]))
    store.append(RAW, make_rows(["s2"]).with_columns(pl.lit(0.5).alias("score")))

    got = physical(store).sort(ID)
    assert got.schema["score"] == pl.Float64
    assert got["score"].to_list() == [None, 0.5]


def test_a_missing_column_reads_as_null(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1"]))
    store.append(RAW, make_rows(["s2"]).drop("path"))

    assert physical(store).sort(ID)["path"].to_list() == ["/data/s1-v1.mp4", None]


def test_struct_fields_land_by_name(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1"], fields=("audio", "frames")))
    store.append(RAW, make_rows(["s2"], fields=("frames", "audio")))

    got = physical(store).sort(ID)
    assert got.schema[c.PROVENANCE_BY_FIELD] == c.struct_dtype(("audio", "frames"))
    by_field = got[c.PROVENANCE_BY_FIELD].struct
    assert by_field.field("audio").to_list() == ["audio-s1-v1", "audio-s2-v1"]
    assert by_field.field("frames").to_list() == ["frames-s1-v1", "frames-s2-v1"]


def test_a_struct_missing_a_field_reads_it_as_null(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, make_rows(["s1"], fields=("audio", "frames")))
    store.append(RAW, make_rows(["s2"], fields=("audio",)))

    by_field = physical(store).sort(ID)[c.PROVENANCE_BY_FIELD].struct
    assert by_field.field("frames").to_list() == ["frames-s1-v1", None]


def test_a_struct_gaining_a_field_keeps_it(store: MetadataStore, make_rows: MakeRows) -> None:
    # A feature that gains a field writes provenance with one more struct field.
    store.append(RAW, make_rows(["s1"], fields=("audio", "frames")))
    store.append(RAW, make_rows(["s2"], fields=("audio", "frames", "summary")))

    by_field = physical(store).sort(ID)[c.PROVENANCE_BY_FIELD].struct
    assert by_field.field("summary").to_list() == [None, "summary-s2-v1"]


def test_all_null_columns_do_not_fix_a_type(store: MetadataStore, make_rows: MakeRows) -> None:
    # A first chunk whose column is all null leaves it out: the first values decide its type.
    store.append(RAW, make_rows(["s1"]).with_columns(pl.lit(None).alias("note")))
    assert "note" not in physical(store).columns
    store.append(RAW, make_rows(["s2"]).with_columns(pl.lit(1.5).alias("note")))
    # An untyped null written into an existing column keeps the stored type.
    store.append(RAW, make_rows(["s3"]).with_columns(pl.lit(None).alias(c.DELETED_AT)))
    store.append(RAW, make_rows(["s4"]).with_columns(pl.lit(None).alias("note")))

    got = physical(store).sort(ID)
    assert got.schema["note"] == pl.Float64
    assert got["note"].to_list() == [None, 1.5, None, None]
    assert got.schema[c.DELETED_AT] == c.TIMESTAMP
    assert got[c.DELETED_AT].null_count() == 4


def berlin_ns(frame: pl.DataFrame) -> pl.DataFrame:
    """The same instants as Europe/Berlin nanoseconds."""
    zoned = pl.col(c.UPDATED_AT).dt.convert_time_zone("Europe/Berlin").dt.cast_time_unit("ns")
    return frame.with_columns(zoned)


def test_timestamps_in_other_zones_land_as_utc_microseconds(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, make_rows(["s1"], at=T0))
    store.append(RAW, berlin_ns(make_rows(["s2"], at=T1)))

    got = physical(store).sort(ID)
    assert got.schema[c.UPDATED_AT] == c.TIMESTAMP
    assert got[c.UPDATED_AT].to_list() == [T0, T1]


def test_a_new_table_stores_other_zones_as_utc_microseconds(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, berlin_ns(make_rows(["s1"], at=T1)))

    got = physical(store)
    assert got.schema[c.UPDATED_AT] == c.TIMESTAMP
    assert got[c.UPDATED_AT].to_list() == [T1]


def test_read_keeps_the_latest_row_of_each_id(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1", "s2"], at=T0, tag="v1"))
    store.append(RAW, make_rows(["s1"], at=T1, tag="v2"))
    store.append(RAW, make_rows(["s2"], at=T2, tag="v3", feature_version="fv2"))

    assert current(store, feature_version="fv1")["path"].to_list() == [
        "/data/s1-v2.mp4",
        "/data/s2-v1.mp4",
    ]
    assert current(store, feature_version="fv2")["path"].to_list() == ["/data/s2-v3.mp4"]
    assert current(store)["path"].to_list() == ["/data/s1-v2.mp4", "/data/s2-v3.mp4"]


def test_soft_delete_hides_an_id_until_it_is_written_again(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, make_rows(["s1", "s2", "s3"], at=T0))
    doomed = current(store).filter(pl.col("sample_uid") == "s2")

    deleted = store.soft_delete(RAW, doomed, feature_version="fv1", project_version="pv2", at=T1)

    assert deleted == 1
    assert current(store)["sample_uid"].to_list() == ["s1", "s3"]
    with_tombstones = current(store, include_deleted=True)
    assert with_tombstones["sample_uid"].to_list() == ["s1", "s2", "s3"]
    tombstone = with_tombstones.row(1, named=True)
    assert (tombstone[c.DELETED_AT], tombstone[c.UPDATED_AT]) == (T1, T0)
    assert tombstone[c.PROJECT_VERSION] == "pv2"
    assert physical(store).height == 4
    assert store.soft_delete(RAW, doomed.head(0), feature_version="fv1", project_version="pv2") == 0
    assert physical(store).height == 4

    store.append(RAW, make_rows(["s2"], at=T2, tag="v2"))

    again = current(store)
    assert again["sample_uid"].to_list() == ["s1", "s2", "s3"]
    assert again["path"].to_list()[1] == "/data/s2-v2.mp4"


def test_hard_delete_removes_every_row_of_the_matched_ids(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, make_rows(["s1", "s2", "s3"], at=T0))
    store.append(RAW, make_rows(["s1"], at=T1, tag="v2"))
    schema = physical(store).schema

    removed = store.hard_delete(RAW, ~pl.col("sample_uid").is_in(["s1"]))

    assert removed == 2
    remaining = physical(store)
    assert sorted(remaining["sample_uid"]) == ["s2", "s3"]
    assert remaining.schema == schema
    assert store.hard_delete(RAW, ~pl.col("sample_uid").is_in(["s1"])) == 0
    assert store.hard_delete(("demo", "absent"), pl.lit(False)) == 0


def test_hard_delete_of_every_row_leaves_an_empty_table(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    store.append(RAW, make_rows(["s1", "s2"]))

    assert store.hard_delete(RAW, pl.lit(False)) == 2

    assert store.has(RAW)
    empty = physical(store)
    assert empty.height == 0
    assert empty.schema == make_rows([]).schema


def test_read_with_multi_column_ids(store: MetadataStore, make_rows: MakeRows) -> None:
    ids = ["sample_uid", "chunk"]
    store.append(RAW, make_rows(["s1", "s1", "s2"], at=T0).with_columns(chunk=pl.Series([0, 1, 0])))
    store.append(RAW, make_rows(["s1"], at=T1, tag="v2").with_columns(chunk=pl.Series([1])))

    frame = store.read(RAW, ids)

    assert frame is not None
    got = frame.collect().sort(ids).select(*ids, "path")
    assert got.rows() == [
        ("s1", 0, "/data/s1-v1.mp4"),
        ("s1", 1, "/data/s1-v2.mp4"),
        ("s2", 0, "/data/s2-v1.mp4"),
    ]


def test_replace_rewrites_the_rows(store: MetadataStore, make_rows: MakeRows) -> None:
    store.append(RAW, make_rows(["s1", "s2"]))

    store.replace(RAW, make_rows(["s3"]))

    assert physical(store)["sample_uid"].to_list() == ["s3"]


def test_a_read_only_store_on_a_missing_location_creates_nothing(
    open_store: OpenStore, tmp_path: Path, make_rows: MakeRows
) -> None:
    where = tmp_path / "absent"

    with open_store(where, read_only=True) as reader:
        assert reader.scan(RAW) is None
        assert reader.read(RAW, ID) is None
        assert not reader.has(RAW)
        assert reader.tables() == set()
        with pytest.raises(StoreError, match="store 'test' is open read-only"):
            reader.append(RAW, make_rows(["s1"]))
        with pytest.raises(StoreError, match="read-only"):
            reader.replace(RAW, make_rows(["s1"]))

    assert not where.exists()


def test_a_read_only_store_reads_what_a_writer_wrote(
    open_store: OpenStore, tmp_path: Path, make_rows: MakeRows
) -> None:
    with open_store(tmp_path) as writer:
        writer.append(RAW, make_rows(["s1"]))

    with open_store(tmp_path, read_only=True) as reader:
        assert current(reader)["sample_uid"].to_list() == ["s1"]
        with pytest.raises(StoreError, match="read-only"):
            reader.append(RAW, make_rows(["s2"]))
        assert physical(reader).height == 1


def test_a_session_sees_its_own_writes(store: MetadataStore, make_rows: MakeRows) -> None:
    with store.session():
        assert store.scan(RAW) is None
        store.append(RAW, make_rows(["s1"]))
        assert store.has(RAW)
        assert current(store)["sample_uid"].to_list() == ["s1"]

    assert physical(store).height == 1


def test_rows_later_than_a_mark_come_after_every_row_held_then(
    store: MetadataStore, make_rows: MakeRows
) -> None:
    """The condition that lets written rows stand in for a table (the narrowed resolve's
    ``recent`` rows): it must hold for no row whose stamp ties or precedes one held then,
    a tombstone's ``deleted_at`` included."""
    store.append(RAW, make_rows(["s1", "s2"], at=T0))
    store.soft_delete(
        RAW, current(store).head(1), feature_version="fv1", project_version="pv1", at=T2
    )
    mark = store.write_mark(RAW)
    assert mark is not None
    store.append(RAW, make_rows(["s3"], at=T1, tag="v2"))  # after every updated_at, not s1's delete
    store.append(RAW, make_rows(["s4"], at=T2, tag="v2"))  # ties the tombstone
    store.append(RAW, make_rows(["s2"], at=T3, tag="v2"))  # after everything held then

    later = store.later_than_mark(RAW, mark)
    if store.kind == "spark":
        assert later is None  # (Spark bounds no stamps: its resolve reads the table)
        return
    assert later is not None
    since = store.changed_since(RAW, mark)
    assert since is not None
    found = store.engine().rows(exp.select("sample_uid").from_(since.subquery("s")).where(later))
    assert sorted(r[0] for r in found) == ["s2"]
    # At the current mark nothing comes later, and nothing was written after it.
    now_mark = store.write_mark(RAW) or ""
    now = store.later_than_mark(RAW, now_mark)
    newer = store.written_after(RAW, now_mark)
    assert newer is not None
    for condition in (now, newer):
        assert store.engine().rows(exp.select("*").from_(store.ref(RAW)).where(condition)) == []
    assert store.later_than_mark(RAW, "") == exp.true()
