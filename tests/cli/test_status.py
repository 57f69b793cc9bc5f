"""`mxd status` on real projects and stores."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.pipeline_runner import run_step
from tests.populated import on_delta

FEATURES = ["shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking"]


def status_json(root: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = mxd("status", "--json", *args, cwd=root)
    return result.exit_code, json.loads(result.stdout)


def by_feature(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {f["feature"]: f for f in report["features"]}


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_quickstart_before_any_run_reports_every_feature_missing(quickstart: Path) -> None:
    code, report = status_json(quickstart)
    assert code == 0
    assert report["store"] == "dev"
    assert [f["feature"] for f in report["features"]] == FEATURES
    rows = by_feature(report)
    for key in FEATURES:
        row = rows[key]
        assert row["status"] == "missing"
        assert (row["stored"], row["stale"], row["orphaned"], row["unchanged"]) == (0, 0, 0, 0)
        assert row["causes"][0] == "never materialized"
    assert rows["shop/products"]["new"] == rows["shop/reviews"]["new"] == 8
    assert rows["shop/ranking"]["new"] == 0
    assert "upstream shop/pricing is not up to date" in rows["shop/ranking"]["causes"]
    assert not (quickstart / ".mxd").exists()  # status never creates the store


def test_exit_code_3_only_when_pending(quickstart: Path) -> None:
    assert mxd("status", "--exit-code", cwd=quickstart).exit_code == 3
    run_step(api.Project.load(cwd=quickstart))
    code, report = status_json(quickstart, "--exit-code")
    assert code == 0
    assert {f["status"] for f in report["features"]} == {"up_to_date"}
    assert [(f["stored"], f["unchanged"]) for f in report["features"]] == [(8, 8)] * 5


def test_one_changed_value_is_attributed_to_its_upstream(quickstart: Path) -> None:
    run_step(api.Project.load(cwd=quickstart))
    csv = quickstart / "data" / "products.csv"
    csv.write_text(csv.read_text().replace("Headlamp,", "Head Torch,"))
    code, report = status_json(quickstart, "--exit-code")
    assert code == 3
    rows = by_feature(report)
    assert rows["shop/products"]["stale"] == 1
    assert rows["shop/products"]["causes"] == ["1 sample changed (fields: title)"]
    # Only the title changed; pricing depends on price and rating only.
    assert rows["shop/pricing"]["status"] == "up_to_date"
    assert rows["shop/text_stats"]["status"] == "up_to_date"  # its upstream is not rewritten yet
    run_step(api.Project.load(cwd=quickstart), store=None)
    rows = by_feature(status_json(quickstart)[1])
    assert {r["status"] for r in rows.values()} == {"up_to_date"}


def test_stale_downstream_names_the_upstream(quickstart: Path) -> None:
    project = api.Project.load(cwd=quickstart)
    run_step(project)
    csv = quickstart / "data" / "products.csv"
    csv.write_text(csv.read_text().replace("Headlamp,", "Head Torch,"))
    # Write only the root, then ask about its dependents.
    from tests.pipeline_runner import run_step as step

    step(api.Project.load(cwd=quickstart))
    (quickstart / "data" / "reviews.csv").write_text(
        (quickstart / "data" / "reviews.csv").read_text().replace("p006,4.1", "p006,2.0")
    )
    project = api.Project.load(cwd=quickstart)
    config = project.config.store_config()
    from mxd_cli.definitions.asset import AssetContext
    from mxd_cli.definitions.keys import FeatureKey
    from mxd_cli.engine.assets import root_samples
    from mxd_cli.store import open_store
    from tests.engine_steps import Steps

    key = FeatureKey.parse("shop/reviews")
    with open_store(config) as store:
        steps = Steps(store, project.graph, project.versions, project="quickstart")
        samples = root_samples(
            project.registry.assets[key], AssetContext(key, "t", project.config.root)
        )
        steps.write(key, steps.resolve(key, samples))
    rows = by_feature(status_json(quickstart)[1])
    assert rows["shop/pricing"]["stale"] == 1
    assert rows["shop/pricing"]["causes"] == ["upstream shop/reviews: 1 sample changed"]
    assert rows["shop/ranking"]["status"] == "up_to_date"


def test_code_version_change_is_explained(quickstart: Path) -> None:
    run_step(api.Project.load(cwd=quickstart))
    pipeline = quickstart / "pipeline.py"
    pipeline.write_text(
        pipeline.read_text().replace(
            'mx.FieldSpec(key="title", code_version="1"),  # default',
            'mx.FieldSpec(key="title", code_version="2"),  # default',
        )
    )
    rows = by_feature(status_json(quickstart)[1])
    text_stats = rows["shop/text_stats"]
    assert text_stats["status"] == "missing"
    assert (text_stats["stored"], text_stats["new"]) == (0, 8)
    assert text_stats["causes"] == ["code version of field title changed (1 -> 2)"]


def test_filter_restricts_the_comparison(quickstart: Path) -> None:
    code, report = status_json(quickstart, "shop/products", "--filter", "category = 'gear'")
    assert code == 0
    assert by_feature(report)["shop/products"]["new"] == 3
    result = mxd("status", "--json", "shop/products", "--filter", "categroy = 1", cwd=quickstart)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "filter_error"


def test_status_leaves_the_store_byte_for_byte_unchanged(quickstart: Path) -> None:
    run_step(api.Project.load(cwd=quickstart))
    csv = quickstart / "data" / "products.csv"
    csv.write_text(csv.read_text().replace("Headlamp,", "Head Torch,"))
    before = digest(quickstart / ".mxd")
    assert mxd("status", "--json", cwd=quickstart).exit_code == 0
    assert digest(quickstart / ".mxd") == before


def test_status_on_a_delta_store_is_read_only(quickstart: Path) -> None:
    on_delta(quickstart)
    code, report = status_json(quickstart)
    assert by_feature(report)["shop/products"]["new"] == 8
    assert not (quickstart / ".mxd").exists()
    run_step(api.Project.load(cwd=quickstart))
    before = digest(quickstart / ".mxd")
    code, report = status_json(quickstart, "--exit-code")
    assert code == 0
    assert digest(quickstart / ".mxd") == before


def test_root_asset_failure_is_reported_per_feature(make_project) -> None:  # type: ignore[no-untyped-def]
    root = make_project(
        """
        class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"])):
            pass

        @mx.asset(Raw)
        def raw(ctx):
            raise ValueError("source offline")
        """
    )
    code, report = status_json(root)
    assert code == 0
    row = report["features"][0]
    assert row["status"] == "error"
    assert "ValueError: source offline" in row["causes"][0]


@pytest.mark.parametrize("backend", ["duckdb"])
def test_status_beside_a_writer_process(quickstart: Path, backend: str) -> None:
    """A writer in another process appends chunk after chunk; status keeps answering."""
    run_step(api.Project.load(cwd=quickstart))
    database = quickstart / ".mxd" / "dev.duckdb"
    writer = textwrap.dedent(
        f"""
        import time, polars as pl
        from mxd_cli.store.duckdb import DuckDBStore
        store = DuckDBStore("w", {{"database": {str(database)!r}}})
        end = time.monotonic() + 3
        i = 0
        while time.monotonic() < end:
            with store.session():  # one short write transaction per chunk
                store.append(("scratch", "chunks"), pl.DataFrame({{"i": list(range(i, i + 5000))}}))
            i += 5000
            time.sleep(0.02)
        print(i)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        answers = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            code, report = status_json(quickstart)
            assert code == 0, report
            assert by_feature(report)["shop/products"]["status"] == "up_to_date"
            answers += 1
    finally:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert int(out) > 0 and answers >= 2


def test_a_branch_store_says_where_its_rows_come_from(quickstart: Path) -> None:
    run_step(api.Project.load(cwd=quickstart))
    code, report = status_json(quickstart)
    assert code == 0
    assert {f["source"] for f in report["features"]} == {"dev"}
    result = mxd("-s", "branch", "status", "--json", cwd=quickstart)
    branch = by_feature(json.loads(result.stdout))
    assert {f["source"] for f in branch.values()} == {"dev"}
    assert branch["shop/ranking"]["causes"] == ["served by fallback store 'dev'"]


FILTERED_DEP = """
class Items(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/items", id_columns=["id"],
        fields=[mx.FieldSpec(key="text", code_version="1"),
                mx.FieldSpec(key="lang", code_version="1")])):
    lang: str
    text: str
    note: str

class English(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/english", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Items, filters=["language = 'en'"],
                            rename={"lang": "language", "text": "body"})],
        fields=[mx.FieldSpec(key="length", code_version="1")])):
    length: int

@mx.asset(Items)
def items(ctx):
    return pl.read_csv(ctx.project_dir / "items.csv")

@mx.asset(English)
def english(ctx, rows):
    return rows.select("id", pl.col("body").str.len_chars().cast(pl.Int64).alias("length"))
"""


def counted_alike_then_settled(root: Path, feature: str, row: dict) -> None:  # type: ignore[type-arg]
    """A dry run counts what status counted; a run then leaves the feature up to date."""
    dry = json.loads(mxd("materialize", feature, "--dry-run", "--json", cwd=root).stdout)
    counted = dry["features"][0]
    names = ("new", "stale", "orphaned", "unchanged")
    assert {n: counted[n] for n in names} == {n: row[n] for n in names}
    assert mxd("materialize", cwd=root).exit_code == 0
    assert by_feature(status_json(root)[1])[feature]["status"] == "up_to_date"


def test_status_reads_only_the_upstream_columns_its_keys_and_filters_need(
    make_project: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counts and causes need the upstream's data versions, ids and the columns a dep
    filter names (here ``lang``, renamed ``language``), never its other columns: status
    reads none of them, and counts what a dry run counts."""
    root = make_project(FILTERED_DEP)
    csv = root / "items.csv"
    csv.write_text("id,lang,text,note\n1,en,hello,a\n2,fr,bonjour,b\n3,en,world,c\n4,de,hallo,d\n")
    assert mxd("materialize", cwd=root).exit_code == 0
    edited = csv.read_text().replace("3,en,world", "3,en,worlds").replace("2,fr,", "2,en,")
    csv.write_text(edited.replace("1,en,hello,a", "1,en,hello,zz"))  # (note: no field)
    assert mxd("materialize", "demo/items", cwd=root).exit_code == 0
    # (In-process CLI runs route the mxd loggers to their own output, not on.)
    monkeypatch.setattr(logging.getLogger("mxd"), "propagate", True)
    with caplog.at_level(logging.DEBUG, logger="mxd.sql"):
        report = api.status(api.Project.load(cwd=root), ["demo/english"])
    row = by_feature(report)["demo/english"]
    assert (row["new"], row["stale"], row["unchanged"]) == (1, 1, 1)
    assert row["causes"] == [
        "1 new sample available upstream",
        "upstream demo/items: 1 sample changed",
    ]
    sql = [r.getMessage() for r in caplog.records if r.name == "mxd.sql"]
    reads = [s for s in sql if '"demo__items"' in s]
    assert reads and any('"lang"' in s for s in reads)
    assert not any('"note"' in s or '"text"' in s for s in reads)
    counted_alike_then_settled(root, "demo/english", row)


# Two roots read from a.csv and b.csv (columns id and a, id and b) into one feature.
TWO_ROOTS = """
class A(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/a", id_columns=["id"],
        fields=[mx.FieldSpec(key="a", code_version="1")])):
    a: str

class B(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/b", id_columns=["id"],
        fields=[mx.FieldSpec(key="b", code_version="1")])):
    b: str

class C(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/c", id_columns=["id"],
        deps=[mx.FeatureDep(feature=A), mx.FeatureDep(feature=B)],
        fields=[mx.FieldSpec(key="n", code_version="1")])):
    n: int

@mx.asset(A)
def a(ctx):
    return pl.read_csv(ctx.project_dir / "a.csv")

@mx.asset(B)
def b(ctx):
    return pl.read_csv(ctx.project_dir / "b.csv")

@mx.asset(C)
def c(ctx, rows):
    return rows.select("id", pl.lit(1).alias("n"))
"""

# The same, both roots' column (and field) named "text": the two deps bring one column.
COLLIDING_DEPS = (
    TWO_ROOTS.replace('key="a"', 'key="text"')
    .replace('key="b"', 'key="text"')
    .replace("    a: str", "    text: str")
    .replace("    b: str", "    text: str")
)


def test_a_column_two_deps_bring_is_the_same_error_in_status_and_materialize(
    make_project: Callable[..., Path],
) -> None:
    """Status reads no upstream payload, yet it checks every column for collisions as a
    run does: the same exit 2 with the same message, before anything is written."""
    root = make_project(COLLIDING_DEPS)
    (root / "a.csv").write_text("id,text\n1,x\n2,y\n")
    (root / "b.csv").write_text("id,text\n1,u\n2,v\n")
    assert mxd("materialize", "demo/a", "demo/b", cwd=root).exit_code == 0
    status, run = mxd("status", "demo/c", cwd=root), mxd("materialize", "demo/c", cwd=root)
    assert status.exit_code == run.exit_code == 2
    assert "column(s) text come from demo/b and another dep" in status.stderr
    assert status.stderr == run.stderr


def test_a_dep_filter_on_an_upstream_system_column_runs(
    make_project: Callable[..., Path],
) -> None:
    """A dep filter may name the upstream's system columns (they are not renamed): read
    beside the renamed columns, for the filter, in status and in a run alike (before, a
    DuckDB binder error, exit 1)."""
    both = 'filters=["language = \'en\'", "metaxy_created_at IS NOT NULL"]'
    root = make_project(FILTERED_DEP.replace("filters=[\"language = 'en'\"]", both))
    csv = root / "items.csv"
    csv.write_text("id,lang,text,note\n1,en,hello,a\n2,fr,bonjour,b\n3,en,world,c\n")
    first = mxd("materialize", "--json", cwd=root)
    assert first.exit_code == 0, first.stderr
    english = [f for f in json.loads(first.stdout)["features"] if f["feature"] == "demo/english"]
    assert english[0]["written"] == 2
    csv.write_text(csv.read_text().replace("2,fr,", "2,en,"))
    assert mxd("materialize", "demo/items", cwd=root).exit_code == 0
    code, report = status_json(root, "demo/english")
    assert code == 0
    row = by_feature(report)["demo/english"]
    assert (row["new"], row["stale"], row["unchanged"]) == (1, 0, 2)
    assert mxd("materialize", cwd=root).exit_code == 0
    assert by_feature(status_json(root)[1])["demo/english"]["status"] == "up_to_date"


def test_a_written_root_is_not_searched_again_for_the_samples_it_touched(
    make_project: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After one upstream was written, its rows written since the checkpoint hold the
    current row of every touched sample: status reads them instead of searching its
    table by key, and attributes those stale samples to it without reading history.
    Where another source touched a sample too, both tables are searched and the sample is
    compared, then against now. The counts and causes equal a full resolve's (a dry
    run's counts; the causes of a status without checkpoints)."""
    root = make_project(TWO_ROOTS)
    ids = range(1, 9)
    (root / "a.csv").write_text("id,a\n" + "".join(f"{i},a{i}\n" for i in ids))
    (root / "b.csv").write_text("id,b\n" + "".join(f"{i},b{i}\n" for i in ids))
    assert mxd("materialize", cwd=root).exit_code == 0

    def status_of_c() -> tuple[dict, list[str]]:  # type: ignore[type-arg]
        # (In-process CLI runs route the mxd loggers to their own output, not on.)
        monkeypatch.setattr(logging.getLogger("mxd"), "propagate", True)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mxd.sql"):
            report = api.status(api.Project.load(cwd=root), ["demo/c"])
        sql = [r.getMessage() for r in caplog.records if r.name == "mxd.sql"]
        searched = [
            t for t in ("a", "b") if any(f'FROM "demo__{t}" WHERE "rowid" IN' in s for s in sql)
        ]
        return by_feature(report)["demo/c"], searched

    def edit(name: str, *changed: int) -> None:
        csv = root / f"{name}.csv"
        for i in changed:
            csv.write_text(csv.read_text().replace(f"{i},{name}{i}\n", f"{i},{name}{i}x\n"))
        assert mxd("materialize", f"demo/{name}", cwd=root).exit_code == 0

    edit("a", 2, 5)
    row, searched = status_of_c()
    assert (row["stale"], row["unchanged"]) == (2, 6)
    assert row["causes"] == ["upstream demo/a: 2 samples changed"]
    assert searched == ["b"]  # (a's rows since the checkpoint are read instead)

    edit("b", 5, 7)  # sample 5: touched by both; 7 by b alone (so a is searched too)
    row, searched = status_of_c()
    assert (row["stale"], row["unchanged"]) == (3, 5)
    assert row["causes"] == [
        "upstream demo/a: 2 samples changed",
        "upstream demo/b: 2 samples changed",
    ]
    assert searched == ["a", "b"]
    full = api.status(api.Project.load(cwd=root), ["demo/c"], filters=["id > 0"])
    assert by_feature(full)["demo/c"]["causes"] == row["causes"]
    counted_alike_then_settled(root, "demo/c", row)


ONE_ROOT = """
class A(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/a", id_columns=["id"],
        fields=[mx.FieldSpec(key="a", code_version="1")])):
    a: str

@mx.asset(A)
def a(ctx):
    return pl.read_csv(ctx.project_dir / "a.csv")
"""


def test_ids_of_another_type_than_the_stored_ones_are_refused(
    make_project: Callable[..., Path],
) -> None:
    """A root asset whose ids change type (integers, then strings) is told so: status
    reports the feature as an error, a run fails it (exit 1), and no row is written."""
    root = make_project(ONE_ROOT)
    (root / "a.csv").write_text("id,a\n1,x\n2,y\n")
    assert mxd("materialize", cwd=root).exit_code == 0
    (root / "a.csv").write_text("id,a\nk1,x\nk2,y\n")
    message = "id column 'id' is String in the new samples but Int64 in the store"
    code, report = status_json(root)
    row = by_feature(report)["demo/a"]
    assert (code, row["status"]) == (0, "error")
    assert message in row["causes"][0]
    run = mxd("materialize", cwd=root)
    assert run.exit_code == 1
    assert message in run.stderr
    import duckdb

    with duckdb.connect(str(root / ".mxd" / "dev.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM demo__a").fetchone() == (2,)
