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
from tests.conftest import CHAIN, EXAMPLES
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


EXECUTORS = (
    CHAIN
    + """
import os

@mx.asset(Raw)
def raw(ctx):
    return pl.read_csv(ctx.project_dir / "data.csv")

@mx.asset(Clean, chunk_size=3, executor="spark")
def clean(ctx, rows):
    if (rows["value"] == "boom").any():
        raise ValueError("cannot clean boom")
    return rows.select("id", pl.col("value").str.to_uppercase(), pid=pl.lit(os.getpid()))
"""
)

BOTH_STORES = """\
project = "t"
entrypoints = ["pipeline"]
store = "spark"
[stores.spark]
type = "spark"
[stores.spark.config]
master = "local[2]"
[stores.dev]
type = "duckdb"
[stores.dev.config]
database = ".mxd/dev.duckdb"
"""


def test_an_executor_asset_computes_on_the_executors_with_the_same_provenance(
    make_project: Any,
) -> None:
    import os

    root = make_project(EXECUTORS, config=BOTH_STORES)
    values = [f"v{i}" for i in range(20)]
    pl.DataFrame({"id": [f"s{i:02d}" for i in range(20)], "value": values}).write_csv(
        root / "data.csv"
    )
    for store in ("spark", "dev"):
        code, report = command(root, store, "materialize")
        assert code == 0, report
        assert counts(report, "written")["demo/clean"] == (20,)

    def clean_rows(store: str) -> pl.DataFrame:
        project = api.Project.load(cwd=root)
        key = project.graph.resolve_key("demo/clean")
        with open_store(project.config.store_config(store), read_only=True) as opened:
            frame = opened.read(
                key.parts, ["id"], feature_version=project.versions.feature_version(key)
            )
            assert frame is not None
            return frame.collect().sort("id")

    spark, duck = clean_rows("spark"), clean_rows("dev")
    assert spark["value"].to_list() == [v.upper() for v in values]
    for name in ("id", *COMPARED):
        assert spark[name].to_list() == duck[name].to_list(), name
    # The first chunk runs in the driver (it fixes the columns), the rest in Python workers.
    pids = set(spark["pid"].to_list())
    assert os.getpid() in pids and len(pids) > 1
    folders = json.loads((root / ".mxd/spark-warehouse/demo__clean/_mxd_log.json").read_text())
    assert len(folders["commits"]) >= 2  # the driver's chunk, then one commit per job

    # An asset that raises on an executor: the asset's error (exit 1), nothing half-written.
    # (seven samples change: the first chunk runs here, "boom" is in a later one)
    edited = [f"w{i}" if i < 6 else "boom" if i == 17 else v for i, v in enumerate(values)]
    pl.DataFrame({"id": [f"s{i:02d}" for i in range(20)], "value": edited}).write_csv(
        root / "data.csv"
    )
    before = json.loads((root / ".mxd/spark-warehouse/demo__clean/_mxd_log.json").read_text())
    result = mxd("materialize", cwd=root)
    assert result.exit_code == 1, result.output
    # (the worker's error reads as the driver's would)
    assert "asset 'clean' of demo/clean raised ValueError: cannot clean boom" in result.stderr
    after = json.loads((root / ".mxd/spark-warehouse/demo__clean/_mxd_log.json").read_text())
    assert after["commits"][: len(before["commits"])] == before["commits"]


def test_a_spark_branch_is_served_by_its_spark_fallback_and_computes_only_what_differs(
    project: Path,
) -> None:
    config = project / "metaxy.toml"
    config.write_text(
        config.read_text()
        + '\n[stores.spark_branch]\ntype = "spark"\n\n[stores.spark_branch.config]\n'
        + 'master = "local[2]"\nwarehouse = ".mxd/spark-branch"\nfallback_stores = ["spark"]\n'
    )
    code, built = command(project, "spark", "materialize")
    assert code == 0, built
    code, fresh = command(project, "spark_branch", "status", "--exit-code")
    assert code == 0, fresh
    assert counts(fresh, "status", "source", "stored") == dict.fromkeys(
        [f["feature"] for f in fresh["features"]], ("up_to_date", "spark", 8)
    )
    csv = project / "data" / "products.csv"
    csv.write_text(csv.read_text().replace(",119.00,", ",109.00,"))
    code, done = command(project, "spark_branch", "materialize")
    assert code == 0, done
    assert counts(done, "status", "stale", "written", "adopted") == {
        "shop/products": ("success", 1, 1, 8),
        "shop/reviews": ("up_to_date", 0, 0, 0),
        "shop/pricing": ("success", 1, 1, 8),
        "shop/text_stats": ("up_to_date", 0, 0, 0),
        "shop/ranking": ("success", 1, 1, 8),
    }
    code, after = command(project, "spark_branch", "status", "--exit-code")
    assert code == 0, after
    assert counts(after, "source")["shop/ranking"] == ("spark_branch",)
    code, prod = command(project, "spark", "status")
    assert counts(prod, "stale")["shop/products"] == (1,)  # the fallback kept the old price
