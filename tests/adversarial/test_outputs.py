"""Hostile asset outputs and definitions: each fails before anything of it is written, and
the store is left exactly as it was (or as a clean run leaves it)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from mxd_cli import api
from mxd_cli.errors import DefinitionError
from tests.cli.test_definitions import mxd
from tests.conftest import write_project
from tests.engine import materialize_project as mp
from tests.engine.test_materialize import current, run


def height(root: Path, feature: str) -> int:
    """Current samples of a feature (0 when its table does not exist)."""
    try:
        return current(root, feature).height
    except AssertionError:
        return 0


@pytest.fixture
def duck(tmp_path: Path) -> Path:
    return mp.make(tmp_path / "p")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("short", "output lacks 1 of the 2 sample(s) it was given"),
        ("empty", "output lacks 2 of the 2 sample(s) it was given"),
        ("case_dupe", "output columns 'value' and 'VALUE' differ only in case"),
        ("system_case", "'Metaxy_Provenance' differs from the system column"),
        ("reserved", "'metaxy_extra' is not a system column"),
        ("mxd_column", "names starting with '__mxd' are mxd's own"),
        ("empty_name", "output has a column with an empty name"),
        ("dict", "returned a dict"),
    ],
)
def test_bad_outputs_fail_the_asset_and_write_nothing_of_it(
    duck: Path, kind: str, message: str
) -> None:
    mp.behave(duck, output=kind)
    code, report = run(duck)
    assert code == 1
    clean = {f["feature"]: f for f in report["features"]}["demo/clean"]
    assert clean["status"] == "failed" and clean["written"] == 0
    assert message in clean["error"], clean["error"]
    assert height(duck, "demo/clean") == 0
    # No gap is checkpointed: once the asset behaves, the next run computes every sample.
    mp.behave(duck)
    code, report = run(duck)
    assert code == 0
    assert {f["feature"]: f for f in report["features"]}["demo/clean"]["written"] == 8
    columns = current(duck, "demo/clean").columns
    assert "VALUE" not in columns and "metaxy_provenance_1" not in columns


def _pipeline_with_keys(*keys: str) -> str:
    classes = []
    for n, key in enumerate(keys):
        classes.append(
            f"class F{n}(mx.BaseFeature, spec=mx.FeatureSpec(key={key!r}, id_columns=['id'])):\n"
            "    pass\n"
        )
    return "\n".join(classes)


@pytest.mark.parametrize(
    ("first", "second"),
    [("a_/b", "a/_b"), ("a/b-c", "a/b_c"), ("x/y-z", "x/y_z")],
)
def test_two_keys_that_share_a_table_are_refused(tmp_path: Path, first: str, second: str) -> None:
    root = write_project(tmp_path / "p", _pipeline_with_keys(first, second))
    result = mxd("--json", "check", cwd=root)
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["error"] == "definition_error"
    assert first in error["message"] and second in error["message"]
    assert "share the table" in error["message"]


@pytest.mark.parametrize("key", ["metaxy-system/feature_versions", "metaxy_system/x"])
def test_a_key_in_metaxys_system_namespace_is_refused(tmp_path: Path, key: str) -> None:
    root = write_project(tmp_path / "p", _pipeline_with_keys(key))
    with pytest.raises(DefinitionError, match="system table"):
        api.Project.load(cwd=root)


HOSTILE_DEP_FILTER = """
class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"])):
    pass

class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Raw, filters=["value = 'x'; DROP TABLE demo__raw"])])):
    pass

@mx.asset(Raw)
def raw(ctx):
    return pl.DataFrame({"id": ["a"], "value": ["x"]})

@mx.asset(Clean)
def clean(ctx, rows):
    return rows.select("id")
"""


def test_a_hostile_dep_filter_fails_check_and_materialize_writes_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", HOSTILE_DEP_FILTER)
    check = mxd("check", cwd=root)
    assert check.exit_code == 2
    assert "several statements" in check.stderr and "demo/clean" in check.stderr
    result = mxd("materialize", cwd=root)
    assert result.exit_code == 2
    assert not (root / ".mxd").exists()


# ---- mass deletes ---------------------------------------------------------------------


def test_an_empty_root_output_is_refused_before_deleting_anything(duck: Path) -> None:
    assert run(duck)[0] == 0
    (duck / "data.csv").write_text("id,value,grp\n")  # an empty export
    code, report = run(duck)
    assert code == 1
    raw = {f["feature"]: f for f in report["features"]}["demo/raw"]
    assert raw["status"] == "failed" and raw["deleted"] == 0
    assert "would soft-delete 8 of its 8 stored samples" in raw["error"]
    statuses = {f["feature"]: f["status"] for f in report["features"]}
    assert statuses["demo/clean"] == statuses["demo/final"] == "skipped"
    for feature in ("demo/raw", "demo/clean", "demo/final"):
        assert current(duck, feature).height == 8, feature


def test_a_large_share_of_orphans_needs_allow_mass_delete(duck: Path) -> None:
    assert run(duck)[0] == 0
    frame = pl.read_csv(duck / "data.csv", schema_overrides={"id": pl.String})
    frame.head(3).write_csv(duck / "data.csv")  # 5 of 8 samples gone
    code, report = run(duck)
    assert code == 1
    raw = {f["feature"]: f for f in report["features"]}["demo/raw"]
    assert "would soft-delete 5 of its 8" in raw["error"]
    code, report = run(duck, "--max-orphan-fraction", "0.7")
    assert code == 0
    assert {f["feature"]: f for f in report["features"]}["demo/raw"]["deleted"] == 5
    assert current(duck, "demo/clean").height == 3


def test_allow_mass_delete_lets_an_empty_root_through(duck: Path) -> None:
    assert run(duck)[0] == 0
    (duck / "data.csv").write_text("id,value,grp\n")
    code, report = run(duck, "--allow-mass-delete")
    assert code == 0
    deleted = {f["feature"]: f["deleted"] for f in report["features"]}
    assert deleted == {"demo/other": 0, "demo/raw": 8, "demo/clean": 8, "demo/final": 8}


def test_the_threshold_comes_from_the_config(duck: Path) -> None:
    config = duck / "metaxy.toml"
    config.write_text(config.read_text() + "[ext.mxd]\nmax_orphan_fraction = 0.9\n")
    assert run(duck)[0] == 0
    frame = pl.read_csv(duck / "data.csv", schema_overrides={"id": pl.String})
    frame.head(2).write_csv(duck / "data.csv")  # 6 of 8 (75%) gone: under 90%
    code, _ = run(duck)
    assert code == 0


# ---- edge input ---------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["", ",,,", " , "])
def test_keys_that_name_no_id_are_a_usage_error(duck: Path, keys: str) -> None:
    result = mxd("--json", "materialize", "--keys", keys, cwd=duck)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "usage_error"
    assert not (duck / ".mxd").exists()


@pytest.mark.parametrize("bad", ["folder", "file.txt/report.json"])
def test_a_report_path_that_cannot_be_written_fails_before_the_run(duck: Path, bad: str) -> None:
    (duck / "folder").mkdir()
    (duck / "file.txt").write_text("x")
    result = mxd("materialize", "--report", bad, cwd=duck)
    assert result.exit_code == 2, result.output
    assert "--report" in result.stderr
    assert not (duck / ".mxd").exists()


@pytest.mark.parametrize("command", [["delete", "demo/raw", "--all"], ["observe"], ["materialize"]])
def test_negative_waits_are_refused(duck: Path, command: list[str]) -> None:
    result = mxd(*command, "--wait", "-1", cwd=duck)
    assert result.exit_code == 2
    assert "Invalid value for '--wait'" in result.stderr


# ---- damaged stores -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["status"], ["observe"], ["materialize"], ["delete", "demo/raw", "--all"], ["runs"]],
)
def test_a_truncated_duckdb_file_is_a_clear_error_and_is_not_touched(
    duck: Path, command: list[str]
) -> None:
    assert run(duck)[0] == 0
    path = duck / ".mxd" / "dev.duckdb"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = path.read_bytes()
    result = mxd("--json", *command, cwd=duck)
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)
    assert error["error"] == "store_error"
    assert f"DuckDB store {path} is damaged" in error["message"]
    assert path.read_bytes() == before
