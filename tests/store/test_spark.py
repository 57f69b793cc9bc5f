"""The quickstart on the spark store, through the real commands, beside the DuckDB store.

One local Spark session (``local[2]``) serves the whole test process: the commands run
in-process, so only the first one pays for starting the JVM. Each step runs the same
command on both stores of one project and compares counts and the stored provenance.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mxd_cli import api
from mxd_cli.store import columns as c
from mxd_cli.store import open_store
from tests.cli.test_definitions import mxd
from tests.conftest import EXAMPLES
from tests.populated import digest

pytestmark = pytest.mark.spark

STORES = ("dev", "spark")
COMPARED = [
    c.PROVENANCE,
    c.PROVENANCE_BY_FIELD,
    c.DATA_VERSION,
    c.DATA_VERSION_BY_FIELD,
    c.FEATURE_VERSION,
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", dest, ignore=shutil.ignore_patterns(".mxd"))
    return dest


def command(root: Path, store: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = mxd("--store", store, *args, "--json", cwd=root)
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def counts(report: dict[str, Any], *names: str) -> dict[str, tuple[Any, ...]]:
    return {f["feature"]: tuple(f.get(n) for n in names) for f in report["features"]}


def stored(root: Path, store: str) -> dict[str, pl.DataFrame]:
    """Every feature's current rows: ids and what provenance decides."""
    project = api.Project.load(cwd=root)
    found: dict[str, pl.DataFrame] = {}
    with open_store(project.config.store_config(store), read_only=True) as opened:
        for key in project.graph.order:
            ids = list(project.graph[key].spec.id_columns)
            frame = opened.read(
                key.parts, ids, feature_version=project.versions.feature_version(key)
            )
            assert frame is not None, key
            found[str(key)] = frame.collect().select([*ids, *COMPARED]).sort(ids)
    return found


def same_everywhere(root: Path, *args: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Run one command on both stores; its counts must agree. Returns the spark report."""
    reports = {}
    for store in STORES:
        code, reports[store] = command(root, store, *args)
        assert code == 0, (store, reports[store])
    assert counts(reports["dev"], *keys) == counts(reports["spark"], *keys)
    return reports["spark"]


def assert_same_rows(root: Path) -> None:
    duck, spark = stored(root, "dev"), stored(root, "spark")
    assert duck.keys() == spark.keys()
    for feature, frame in duck.items():
        theirs = spark[feature]
        assert theirs.height == frame.height, feature
        for name in frame.columns:
            left, right = frame[name].to_list(), theirs[name].to_list()
            assert left == right, (feature, name)


WRITE = ("new", "stale", "orphaned", "written", "deleted")
STATUS = ("status", "stored", "new", "stale", "orphaned", "unchanged")


def test_quickstart_on_spark_equals_duckdb_run_after_run_and_edit_after_edit(
    project: Path,
) -> None:
    first = same_everywhere(project, "materialize", keys=WRITE)
    assert sum(f["written"] for f in first["features"]) == 40
    assert_same_rows(project)

    again = same_everywhere(project, "materialize", keys=WRITE)
    assert {f["written"] for f in again["features"]} == {0}

    # A product's price changes, a product is added: its rows and their downstream.
    products = project / "data" / "products.csv"
    text = products.read_text().replace("89.90", "79.90")
    products.write_text(text + "p009,Camp Stove,Small gas stove for two,39.00,gear\n")
    same_everywhere(project, "status", keys=STATUS)
    edited = same_everywhere(project, "materialize", keys=WRITE)
    assert counts(edited, "new", "stale")["shop/products"] == (1, 1)
    assert_same_rows(project)

    # A code version bump re-computes one field's feature, and what reads it.
    pipeline = project / "pipeline.py"
    source = pipeline.read_text()
    bumped = source.replace('key="score", code_version="1"', 'key="score", code_version="2"')
    assert bumped != source
    pipeline.write_text(bumped)
    rescored = same_everywhere(project, "materialize", keys=WRITE)
    assert sum(counts(rescored, "new", "stale")["shop/ranking"]) == 8  # (p009 has no review)
    assert_same_rows(project)

    # observe's content fingerprints are computed in each engine: the same on both
    observed = same_everywhere(project, "observe", keys=("rows", "fingerprint"))
    assert counts(observed, "rows")["shop/products"] == (9,)

    # Soft delete with cascade, then a run brings the samples back exactly.
    gear = ("delete", "shop/products", "--filter", "category = 'gear'", "--cascade", "--yes")
    deleted = same_everywhere(project, *gear, keys=("matched", "deleted"))
    assert counts(deleted, "deleted")["shop/products"] == (4,)
    same_everywhere(project, "materialize", keys=WRITE)
    assert_same_rows(project)


HOSTILE = [
    "price > 1; DROP TABLE shop__products",
    "category = 'a' OR 1=1) --",
    "read_parquet('x') IS NOT NULL",
    "price = 'cheap'",
    "(SELECT 1) = 1",
]


def test_hostile_filters_through_delete_leave_the_spark_store_untouched(project: Path) -> None:
    code, _ = command(project, "spark", "materialize")
    assert code == 0
    before = digest(project / ".mxd" / "spark-warehouse")
    for hostile in HOSTILE:
        result = mxd("--store", "spark", "delete", "shop/products", "--filter", hostile, "--yes",
                     cwd=project)  # fmt: skip
        assert result.exit_code == 2, (hostile, result.output)
        assert "filter" in result.stderr.lower(), hostile
    assert digest(project / ".mxd" / "spark-warehouse") == before


def test_hard_delete_rewrites_the_table_in_one_commit(project: Path) -> None:
    assert command(project, "spark", "materialize")[0] == 0
    table = project / ".mxd" / "spark-warehouse" / "shop__reviews"
    before = sorted(p.name for p in table.iterdir() if p.is_dir())
    code, report = command(
        project, "spark", "delete", "shop/reviews", "--filter", "rating < 4.5", "--hard", "--yes"
    )
    assert code == 0, report
    removed = counts(report, "deleted")["shop/reviews"][0]
    assert removed > 0
    after = sorted(p.name for p in table.iterdir() if p.is_dir())
    assert len(after) == 1 and after[0] not in before  # one new folder; the old ones gone
    log = json.loads((table / "_mxd_log.json").read_text())
    assert log["commits"] == after and log["history"][-1]["op"] == "rewrite"
    code, status = command(project, "spark", "status", "shop/reviews")
    assert counts(status, "stored", "new")["shop/reviews"] == (8 - removed, removed)


def test_kill_9_mid_run_on_spark_then_the_next_run_redoes_only_what_is_missing(
    tmp_path: Path,
) -> None:
    from tests.engine import materialize_project as mp
    from tests.engine.test_faults import start, wait_for_chunks

    root = mp.make(tmp_path / "killed", store="spark")
    mp.behave(root, sleep=1.0)
    proc = start(root)
    wait_for_chunks(root, 3, timeout=180)  # two chunks committed, the third in the asset
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    project = api.Project.load(cwd=root)
    key = project.graph.resolve_key("demo/clean")
    with open_store(project.config.store_config(None), read_only=True) as store:
        frame = store.read(key.parts, ["id"], feature_version=project.versions.feature_version(key))
        kept = 0 if frame is None else frame.collect().height
    assert kept in (2, 4, 6)  # whole chunks only

    mp.behave(root)
    result = mxd("materialize", "--json", cwd=root)
    assert result.exit_code == 0, result.output
    clean = {f["feature"]: f for f in json.loads(result.stdout)["features"]}["demo/clean"]
    assert clean["new"] == 8 - kept
    runs = api.runs(api.Project.load(cwd=root))["runs"]
    assert [r["status"] for r in runs] == ["success", "interrupted"]
