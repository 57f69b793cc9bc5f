"""A narrow read (the rows of a few samples out of a large table) finds the rows by their
key columns first and fetches the other columns of those rows only, where the engine
can address rows; the rows are the same either way."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sqlglot import exp

from mxd_cli.engine.plan import TableSource, narrowed
from mxd_cli.engine.sql import col, in_keys
from mxd_cli.store.duckdb import DuckDBStore
from mxd_cli.store.overlay import OverlayStore


def _store(tmp_path: Path, frame: pl.DataFrame) -> DuckDBStore:
    store = DuckDBStore("dev", {"database": str(tmp_path / "dev.duckdb")})
    engine = store.engine()
    view = engine.register(frame)
    engine.execute(f"CREATE TABLE t AS SELECT * FROM {engine.render(view)}")
    return store


def _rows(store: DuckDBStore, source: TableSource) -> pl.DataFrame:
    return store.engine().frame(exp.select("*").from_(source.ref)).sort("id", "v")


@pytest.mark.parametrize("rowid_column", [False, True])
def test_rows_found_by_row_id_equal_a_plain_filter(tmp_path: Path, rowid_column: bool) -> None:
    frame = pl.DataFrame(
        {"id": [f"s{i % 50}" for i in range(200)], "v": list(range(200)), "w": ["x"] * 200}
    )
    if rowid_column:  # a user column of that name: the engine's row ids are not used
        frame = frame.with_columns(rowid=pl.lit(7))
    store = _store(tmp_path, frame)
    try:
        engine = store.engine()
        keys = engine.register(pl.DataFrame({"id": ["s3", "s17", "s49", "nope"]}))
        schema = engine.arrow(exp.select("*").from_("t").limit(0)).schema
        where = in_keys(["id"], exp.select(col("id")).from_(keys).subquery("k"))
        plain = narrowed(TableSource(exp.to_table("t"), schema, "dev"), ["id", "v"], where, None)
        addressed = narrowed(
            TableSource(exp.to_table("t"), schema, "dev", row_ids=True),
            ["id", "v"],
            where.copy(),
            None,
        )
        sql = engine.render(addressed.ref)
        assert ('"rowid" IN' in sql) is not rowid_column
        assert '"rowid" IN' not in engine.render(plain.ref)
        found = _rows(store, addressed)
        assert found.equals(_rows(store, plain))
        assert found["id"].unique().sort().to_list() == ["s17", "s3", "s49"]
        assert found.height == 12 and found.columns == ["id", "v"]
    finally:
        store.close()


def test_only_base_tables_are_row_addressable(tmp_path: Path) -> None:
    store = _store(tmp_path, pl.DataFrame({"id": ["a"]}))
    store.refresh(("t",))
    overlay = OverlayStore(store)
    try:
        assert store.row_addressable(("t",))
        assert overlay.row_addressable(("t",))  # nothing written in the overlay: the table
        overlay.append(("t",), pl.DataFrame({"id": ["b"]}))
        assert not overlay.row_addressable(("t",))  # a view of the union now
        assert store.row_addressable(("t",))
    finally:
        store.close()
