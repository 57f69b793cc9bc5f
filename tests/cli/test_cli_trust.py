"""What CI scripts rely on: pure JSON on stdout, usage errors as JSON, SIGTERM handled like
Ctrl-C, help that reads as words, shell completion, and tables that fit narrow terminals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.conftest import write_project
from tests.engine import materialize_project as mp

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["list", "graph", "check", "status", "materialize", "runs", "observe", "delete"]


def run_mxd(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process (file descriptors and signals as in CI)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "mxd_cli", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_mxd(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "mxd_cli", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---- stdout is data only ---------------------------------------------------------------

NOISY = """
import os
print("printed while importing")
os.write(1, b"written to fd 1 while importing\\n")

class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Raw)],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

def _version(ctx):
    print("printed by source_version")
    return "v1"

@mx.asset(Raw, source_version=_version)
def raw(ctx):
    print("printed by the root asset")
    os.write(1, b"written to fd 1 by the root asset\\n")
    return pl.DataFrame({"id": ["a", "b", "c"], "value": ["x", "y", "z"]})

@mx.asset(Clean)
def clean(ctx, rows):
    print("printed by the downstream asset")
    return rows.select("id", "value")
"""


@pytest.mark.parametrize("command", ["materialize", "status", "observe", "list", "check"])
def test_prints_in_user_code_never_reach_stdout(tmp_path: Path, command: str) -> None:
    root = write_project(tmp_path / "p", NOISY)
    result = run_mxd(root, "--json", command)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # nothing but the one JSON document
    assert isinstance(document, dict)
    assert "printed while importing" in result.stderr
    assert "written to fd 1 while importing" in result.stderr
    if command in ("materialize", "status", "observe"):
        assert "printed by the root asset" in result.stderr
        assert "written to fd 1 by the root asset" in result.stderr


def test_prints_in_assets_stay_off_stdout_in_process(tmp_path: Path) -> None:
    # (In process the runner swaps sys.stdout; fd 1 is the test process's own.)
    no_fd_writes = "\n".join(line for line in NOISY.splitlines() if "os.write" not in line)
    root = write_project(tmp_path / "p", no_fd_writes)
    result = mxd("--json", "materialize", cwd=root)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "success"
    assert "printed by the downstream asset" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "materialize", "--bogus"],
        ["materialize", "--json", "--chunk-size", "zero"],
        ["--json", "status", "--filter"],
        ["--json", "delete"],
        ["--json", "nosuchcommand"],
    ],
)
def test_usage_errors_under_json_print_one_error_document(tmp_path: Path, args: list[str]) -> None:
    result = run_mxd(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    assert document["error"] == "usage_error"
    assert document["message"] and document["hint"]
    assert set(document) == {"error", "message", "hint"}


def test_usage_error_without_json_goes_to_stderr_only(tmp_path: Path) -> None:
    result = run_mxd(tmp_path, "materialize", "--bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "No such option: --bogus" in result.stderr
    assert "mxd materialize --help" in result.stderr


def test_config_error_under_json_is_one_document(tmp_path: Path) -> None:
    result = run_mxd(tmp_path, "--json", "status")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"] == "config_error"


# ---- SIGTERM ---------------------------------------------------------------------------


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigterm_finishes_the_chunk_records_interrupted_and_exits_143(tmp_path: Path) -> None:
    root = mp.make(tmp_path / "p")
    mp.behave(root, sleep=0.5)
    proc = start_mxd(root, "--json", "materialize")
    _wait_for(lambda: len(mp.calls(root, "demo/clean")) >= 1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    report = json.loads(stdout)
    assert report["status"] == "interrupted"
    clean = {f["feature"]: f for f in report["features"]}["demo/clean"]
    assert clean["status"] == "interrupted" and clean["written"] == 2
    runs = api.runs(api.Project.load(cwd=root))["runs"]
    assert [r["status"] for r in runs] == ["interrupted"]  # recorded now, not by a later run
    assert not list((root / ".mxd").glob("*.mxd-lock"))  # released


def test_sigterm_during_a_read_only_command_exits_143(tmp_path: Path) -> None:
    slow = NOISY.replace('print("printed by the root asset")', "import time; time.sleep(30)")
    root = write_project(tmp_path / "p", slow)
    proc = start_mxd(root, "--json", "status")
    time.sleep(2.0)  # importing, then inside the root asset
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr
    assert json.loads(stdout)["error"] == "terminated"


# ---- help, completion, selectors ---------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_as_words_with_an_example_block(command: str) -> None:
    result = mxd(command, "--help")
    assert result.exit_code == 0
    assert not re.search(r"<[a-z\[\]|, ]+>", result.stdout), result.stdout  # no <list[str]>
    assert "Examples:\n" in result.stdout
    assert re.search(r"\n    mxd ", result.stdout)  # the examples keep their lines


def test_placeholders_name_what_they_take() -> None:
    text = mxd("materialize", "--help").stdout
    for placeholder in ("[SELECT]...", "--filter SQL", "--keys ID,...", "--chunk-size N"):
        assert placeholder in text


def test_shell_completion_is_available() -> None:
    # Typer finds the shell among the process's parents, as it would in a terminal: run
    # mxd from bash (pytest itself may run with no shell above it, e.g. detached).
    command = f"{sys.executable} -m mxd_cli --show-completion"
    result = subprocess.run(
        ["bash", "-c", f"{command}; exit $?"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "complete" in result.stdout and "mxd" in result.stdout
    assert "--install-completion" in mxd("--help").stdout


def test_list_takes_positional_selectors(quickstart: Path) -> None:
    listed = json.loads(mxd("--json", "list", "shop/pricing+", cwd=quickstart).stdout)
    assert [f["feature"] for f in listed["features"]] == ["shop/pricing", "shop/ranking"]
    same = json.loads(mxd("--json", "list", "features", "shop/pricing+", cwd=quickstart).stdout)
    assert same == listed
    stores = json.loads(mxd("--json", "list", "stores", cwd=quickstart).stdout)
    assert [s["name"] for s in stores["stores"]] == ["dev", "branch", "spark"]


# ---- tables that fit ---------------------------------------------------------------------


def _table_commands(qs: Path) -> list[list[str]]:
    return [
        ["list"],
        ["list", "stores"],
        ["graph"],
        ["status"],
        ["observe"],
        ["runs"],
        ["delete", "shop/products", "--filter", "price > 0", "--cascade", "--dry-run"],
        ["materialize", "--dry-run"],
    ]


@pytest.mark.parametrize("width", [80, 60])
def test_every_table_fits_without_cutting_a_cell(qs: Path, width: int) -> None:
    assert mxd("materialize", cwd=qs).exit_code == 0  # one run in the history
    for args in _table_commands(qs):
        result = mxd(*args, cwd=qs, env={"COLUMNS": str(width)})
        assert result.exit_code == 0, (args, result.output)
        text = result.stdout
        assert "…" not in text, (args, text)
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), (args, text)
        for feature in ("shop/products", "shop/reviews", "shop/pricing", "shop/ranking"):
            if args[0] in ("graph", "status", "observe", "materialize") or args == ["list"]:
                assert feature in text, (args, feature, text)
        if args[0] == "status":
            report = json.loads(mxd("--json", "status", cwd=qs).stdout)
            for f in report["features"]:
                for word in " ".join(f["causes"]).split():
                    assert word in text, (word, text)
