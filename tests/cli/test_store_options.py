"""Store options are checked when the config loads: typos and missing keys are exit-2
errors naming the file, line, store and key, never silently ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_definitions import mxd
from tests.conftest import CHAIN, write_project


def project_with(tmp_path: Path, store_table: str) -> Path:
    config = f'project = "t"\nentrypoints = ["pipeline"]\n{store_table}'
    return write_project(tmp_path / "p", CHAIN, config=config)


@pytest.mark.parametrize("command", ["check", "status", "materialize", "observe", "list"])
def test_a_typo_in_a_store_option_is_an_error_naming_file_line_and_key(
    tmp_path: Path, command: str
) -> None:
    root = project_with(
        tmp_path, '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabse = "x.duckdb"\n'
    )
    result = mxd("--json", command, cwd=root)
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert error["error"] == "config_error"
    assert error["message"] == (
        f"{root / 'metaxy.toml'}:6: store 'dev': unknown duckdb option 'databse'"
    )
    assert error["hint"] == "did you mean 'database'?"
    assert not (root / "x.duckdb").exists() and not (root / ".mxd").exists()


def test_a_store_without_its_required_option(tmp_path: Path) -> None:
    root = project_with(tmp_path, '[stores.dev]\ntype = "duckdb"\n')
    result = mxd("check", cwd=root)
    assert result.exit_code == 2
    assert "metaxy.toml:3: store 'dev': the duckdb option 'database' is required" in result.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[stores.dev]\ntype = "delta"\nconfig = { root_path = "d", layot = "flat" }\n',
            ":5: store 'dev': unknown delta option 'layot'",
        ),
        (
            '[stores.dev]\ntype = "delta"\nconfig = { root_path = "d", layout = "flatt" }\n',
            ":5: store 'dev': option 'layout' must be one of 'nested', 'flat', not 'flatt'",
        ),
        (
            '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = 3\n',
            ":6: store 'dev': option 'database' must be a path string, got 3",
        ),
        (
            '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "x"\n'
            'extensions = ["hashfuncs"]\n',
            ":7: store 'dev': mxd does not support option 'extensions'",
        ),
        (
            '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "x"\n'
            "config = { theads = 2 }\n",
            ":7: store 'dev': unknown DuckDB setting config.theads",
        ),
        (
            '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "x"\n'
            "config = { autoinstall_known_extensions = true }\n",
            ":7: store 'dev': mxd keeps DuckDB setting 'autoinstall_known_extensions' off",
        ),
        (
            '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "md:prod"\n',
            ":6: store 'dev': MotherDuck databases ('md:prod') are not supported by mxd",
        ),
    ],
)
def test_bad_store_options(tmp_path: Path, table: str, message: str) -> None:
    root = project_with(tmp_path, table)
    result = mxd("check", cwd=root)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr


def test_the_did_you_mean_of_a_duckdb_setting(tmp_path: Path) -> None:
    root = project_with(
        tmp_path,
        '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "x"\nconfig = { theads = 2 }\n',
    )
    error = json.loads(mxd("--json", "check", cwd=root).stdout)
    assert error["hint"] == "did you mean 'threads'?"


def test_a_delta_root_that_is_a_file(tmp_path: Path) -> None:
    root = project_with(tmp_path, '[stores.dev]\ntype = "delta"\nconfig.root_path = "lake"\n')
    (root / "lake").write_text("not a folder")
    result = mxd("check", cwd=root)
    assert result.exit_code == 2
    assert f"root_path {root / 'lake'} is a file, not a folder" in result.stderr


def test_an_in_memory_duckdb_store_works_for_a_whole_command(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", CHAIN + MEMORY_ASSETS, config=MEMORY_CONFIG)
    result = mxd("--json", "materialize", cwd=root)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [f["written"] for f in report["features"]] == [3, 3]
    assert "in-memory DuckDB database: nothing is kept" in result.stderr
    again = json.loads(mxd("--json", "status", cwd=root).stdout)
    assert [f["stored"] for f in again["features"]] == [0, 0]  # a new command, a new database


MEMORY_CONFIG = """\
project = "t"
entrypoints = ["pipeline"]
[stores.dev]
type = "duckdb"
config.database = ":memory:"
"""

MEMORY_ASSETS = """
@mx.asset(Raw)
def raw(ctx):
    return pl.DataFrame({"id": ["a", "b", "c"], "value": ["x", "y", "z"]})

@mx.asset(Clean)
def clean(ctx, rows):
    return rows.select("id", "value")
"""


def test_config_errors_carry_the_line_of_the_key(tmp_path: Path) -> None:
    root = project_with(
        tmp_path,
        '[stores.dev]\ntype = "duckdb"\nconfig.database = "x"\nconfig.hash_algorithm = "sha265"\n',
    )
    error = json.loads(mxd("--json", "check", cwd=root).stdout)
    assert error["message"].startswith(f"{root / 'metaxy.toml'}:6: unknown hash_algorithm")


def test_a_relative_path_metaxy_would_read_elsewhere_is_warned_about(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", CHAIN + MEMORY_ASSETS)
    (root / "sub").mkdir()
    (root / "sub" / ".mxd").mkdir()
    (root / "sub" / ".mxd" / "dev.duckdb").touch()  # where Metaxy, run from sub/, would look
    result = mxd("-c", "../metaxy.toml", "status", cwd=root / "sub")
    assert result.exit_code == 0, result.output
    assert "Metaxy reads it relative to the current directory" in result.stderr
    quiet = mxd("status", cwd=root)
    assert "Metaxy reads it" not in quiet.stderr
