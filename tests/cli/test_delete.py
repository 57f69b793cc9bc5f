"""`mxd delete` through the real command on both backends: counts, safety, hostile filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.populated import clone, digest

GEAR = "category = 'gear'"  # p004, p006, p008


def delete_json(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = mxd("delete", "--json", *args, cwd=root)
    return result.exit_code, json.loads(result.stdout)


def matched(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {f["feature"]: (f["matched"], f["deleted"]) for f in report["features"]}


def status_of(root: Path, feature: str) -> dict[str, Any]:
    result = mxd("status", "--json", feature, cwd=root)
    rows: list[dict[str, Any]] = json.loads(result.stdout)["features"]
    return rows[0]


def test_dry_run_counts_exactly_and_writes_nothing(qs: Path) -> None:
    before = digest(qs / ".mxd")
    code, report = delete_json(qs, "shop/products", "--filter", GEAR, "--cascade", "--dry-run")
    assert code == 0
    assert (report["dry_run"], report["mode"]) == (True, "soft")
    assert matched(report) == {
        "shop/products": (3, 0),
        "shop/pricing": (3, 0),
        "shop/text_stats": (3, 0),
        "shop/ranking": (3, 0),
    }
    code, report = delete_json(qs, "shop/products", "--filter", GEAR, "--hard", "--dry-run")
    assert code == 0 and report["mode"] == "hard"
    assert [(f["matched"], f["rows"]) for f in report["features"]] == [(3, 3)]
    assert digest(qs / ".mxd") == before


def test_soft_delete_then_status_shows_the_samples_as_new(qs: Path) -> None:
    code, report = delete_json(qs, "shop/products", "--filter", GEAR, "--filter", "price > 50")
    assert code == 0
    assert (report["dry_run"], report["mode"]) == (False, "soft")
    assert matched(report) == {"shop/products": (2, 2)}  # p004 (75.00) and p008 (349.00)
    products = status_of(qs, "shop/products")
    assert (products["status"], products["new"], products["unchanged"]) == ("needs_update", 2, 6)
    assert products["stored"] == 6
    # Deleting again matches nothing: tombstoned samples are not current.
    assert matched(delete_json(qs, "shop/products", "--filter", GEAR)[1]) == {
        "shop/products": (1, 1)
    }


def test_cascade_reports_each_downstream_feature(qs: Path) -> None:
    code, report = delete_json(qs, "shop/reviews", "--filter", "rating < 4.0", "--cascade")
    assert code == 0
    assert matched(report) == {
        "shop/reviews": (2, 2),
        "shop/pricing": (2, 2),
        "shop/ranking": (2, 2),
    }
    assert [f["cascade_from"] for f in report["features"]] == [
        [],
        ["shop/reviews"],
        ["shop/pricing"],
    ]
    assert status_of(qs, "shop/ranking")["stored"] == 6


def test_hard_delete_with_yes_removes_rows(qs: Path) -> None:
    code, report = delete_json(qs, "shop/products", "--filter", GEAR, "--hard", "--yes")
    assert code == 0
    assert matched(report) == {"shop/products": (3, 3)}
    assert report["features"][0]["rows"] == 3
    assert status_of(qs, "shop/products")["stored"] == 5
    project = api.Project.load(cwd=qs)
    with_history = api.delete(project, ["shop/products"], all_rows=True, hard=True)
    assert with_history["features"][0]["rows"] == 5


def test_hard_delete_off_a_terminal_needs_yes(qs: Path) -> None:
    before = digest(qs / ".mxd")
    result = mxd("delete", "shop/products", "--filter", GEAR, "--hard", cwd=qs)
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert digest(qs / ".mxd") == before


def test_no_filter_needs_all(qs: Path) -> None:
    before = digest(qs / ".mxd")
    result = mxd("delete", "--json", "shop/reviews", cwd=qs)
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["error"] == "usage_error" and "--all" in error["hint"]
    assert digest(qs / ".mxd") == before
    code, report = delete_json(qs, "shop/reviews", "--all")
    assert code == 0
    assert matched(report) == {"shop/reviews": (8, 8)}
    assert status_of(qs, "shop/reviews")["new"] == 8


def test_unknown_feature_and_column_are_usage_errors(qs: Path) -> None:
    before = digest(qs / ".mxd")
    result = mxd("delete", "--json", "shop/product", "--filter", GEAR, cwd=qs)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["hint"] == "did you mean 'shop/products'?"
    result = mxd("delete", "--json", "shop/products", "--filter", "categroy = 'gear'", cwd=qs)
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["error"] == "filter_error" and "category" in error["hint"]
    assert digest(qs / ".mxd") == before


def test_human_output_is_a_table_and_a_summary(qs: Path) -> None:
    result = mxd("delete", "shop/products", "--filter", GEAR, "--cascade", "--dry-run", cwd=qs)
    assert result.exit_code == 0
    assert "shop/text_stats" in result.stdout and "shop/products" in result.stdout
    assert "Dry run: would soft-delete 12 samples in 4 features" in result.stderr


HOSTILE = [
    "1=1; DROP TABLE shop__products",
    "product_id IN (SELECT product_id FROM shop__products)",
    "read_csv('/etc/passwd') IS NOT NULL",
    "price > 0 -- tail",
    "price > 0 /* hidden */ OR 1=1",
    "/* x */ price > 0",
    "title = 'unbalanced",
    '"title = 1',
    "price > 0 AND " * 800 + "price > 0",  # over 10,000 characters
    "x" * 10_001,
    '"prïce" > 1',
    "prïce > 1",
    "título = 'x'",
    "price > ?",
    "COPY shop__products TO '/tmp/x.csv'",
    "ATTACH 'x.db'",
    "",
]


@pytest.fixture(scope="module")
def shared(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clone for the whole hostile corpus: none of it may change a byte."""
    return clone(template, tmp_path_factory.mktemp("hostile") / "qs")


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_filters_exit_2_and_change_nothing(shared: Path, index: int) -> None:
    # Every other input goes through the most destructive flags (parsing comes first anyway).
    flags = ("--hard", "--yes", "--cascade") if index % 2 else ()
    before = digest(shared / ".mxd")
    result = mxd(
        "delete", "--json", "shop/products", "--filter", HOSTILE[index], *flags, cwd=shared
    )
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == "filter_error"
    assert digest(shared / ".mxd") == before


@pytest.mark.parametrize(("answer", "code", "stored"), [("n\n", 1, 8), ("y\n", 0, 5)])
def test_hard_delete_asks_on_a_terminal(
    qs: Path, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, stored: int
) -> None:
    from typer.testing import CliRunner

    from mxd_cli.cli import app
    from mxd_cli.cli import delete as delete_cli

    monkeypatch.setattr(delete_cli, "_interactive", lambda: True)
    monkeypatch.chdir(qs)
    result = CliRunner().invoke(
        app,
        ["delete", "shop/products", "--filter", GEAR, "--hard"],
        input=answer,
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == code, result.output
    assert "Permanently remove 3 sample(s) from 1 feature(s)?" in result.stderr
    assert status_of(qs, "shop/products")["stored"] == stored


def test_a_held_lock_is_reported_and_nothing_is_written(qs: Path) -> None:
    from mxd_cli.store import open_store
    from mxd_cli.store.lock import WriterLock

    project = api.Project.load(cwd=qs)
    with open_store(project.config.store_config()) as store:
        lock_path = store.lock_path()
    assert lock_path is not None
    with WriterLock(lock_path, command="other writer"):
        before = digest(qs / ".mxd")
        result = mxd("delete", "--json", "shop/products", "--filter", GEAR, cwd=qs)
        assert result.exit_code == 1
        error = json.loads(result.stdout)
        assert error["error"] == "store_locked" and "other writer" in error["message"]
        assert digest(qs / ".mxd") == before
