"""`mxd materialize` end to end: increments, chunks, bad outputs, options, run history."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mxd_cli import api
from mxd_cli.engine.results import RunOptions
from mxd_cli.store import open_store
from tests.cli.test_definitions import mxd
from tests.engine import materialize_project as mp

FEATURES = ["demo/other", "demo/raw", "demo/clean", "demo/final"]


def run(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = mxd("materialize", "--json", *args, cwd=root)
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout)


def by_feature(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in report["features"]}


def counts(report: dict[str, Any], *names: str) -> dict[str, tuple[int, ...]]:
    names = names or ("new", "stale", "orphaned", "written")
    return {f["feature"]: tuple(f[n] for n in names) for f in report["features"]}


def current(root: Path, feature: str) -> pl.DataFrame:
    project = api.Project.load(cwd=root)
    key = project.graph.resolve_key(feature)
    with open_store(project.config.store_config(None), read_only=True) as store:
        frame = store.read(
            key.parts,
            project.graph[key].spec.id_columns,
            feature_version=project.versions.feature_version(key),
        )
        assert frame is not None
        return frame.collect().sort("id")


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=["duckdb", "delta"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return mp.make(tmp_path / "p", store=request.param)


@pytest.fixture
def duck(tmp_path: Path) -> Path:
    return mp.make(tmp_path / "p")


def test_first_run_noop_and_one_change(project: Path) -> None:
    code, first = run(project)
    assert code == 0 and first["status"] == "success" and first["dry_run"] is False
    assert counts(first) == {
        "demo/other": (2, 0, 0, 2),
        "demo/raw": (8, 0, 0, 8),
        "demo/clean": (8, 0, 0, 8),
        "demo/final": (8, 0, 0, 8),
    }
    assert mp.calls(project, "demo/clean") == [
        "chunk 2 s1,s2", "chunk 2 s3,s4", "chunk 2 s5,s6", "chunk 2 s7,s8"
    ]  # fmt: skip
    assert current(project, "demo/clean")["value"].to_list() == [f"V{i}" for i in range(1, 9)]

    code, again = run(project)
    assert code == 0
    assert {f["status"] for f in again["features"]} == {"up_to_date"}
    assert again["written"] == 0
    assert by_feature(again)["demo/final"]["unchanged"] == 8
    # The no-op run read no rows: the checkpointed root was not even asked for samples.
    assert mp.calls(project, "demo/raw") == ["root"]
    assert len(mp.calls(project, "demo/clean")) == 4

    mp.edit(project, "s3", "changed")
    code, third = run(project)
    assert code == 0
    assert counts(third) == {
        "demo/other": (0, 0, 0, 0),
        "demo/raw": (0, 1, 0, 1),
        "demo/clean": (0, 1, 0, 1),
        "demo/final": (0, 1, 0, 1),
    }
    assert mp.calls(project, "demo/clean")[-1] == "chunk 1 s3"
    assert current(project, "demo/clean").filter(pl.col("id") == "s3")["value"].item() == "CHANGED"
    status = api.status(api.Project.load(cwd=project))
    assert not status["pending"]


def test_orphans_are_soft_deleted_unless_kept(duck: Path) -> None:
    run(duck)
    frame = pl.read_csv(duck / "data.csv", schema_overrides={"id": pl.String})
    frame.filter(pl.col("id") != "s8").write_csv(duck / "data.csv")
    code, kept = run(duck, "--keep-orphans")
    assert code == 0
    assert counts(kept, "orphaned", "deleted")["demo/raw"] == (1, 0)
    code, report = run(duck)
    assert counts(report, "orphaned", "deleted") == {
        "demo/other": (0, 0),
        "demo/raw": (1, 1),
        "demo/clean": (1, 1),
        "demo/final": (1, 1),
    }
    assert current(duck, "demo/final")["id"].to_list() == [f"s{i}" for i in range(1, 8)]


def test_full_recomputes_everything_selected(duck: Path) -> None:
    run(duck)
    code, report = run(duck, "demo/clean", "--full")
    assert code == 0
    assert [f["feature"] for f in report["features"]] == ["demo/clean"]
    assert counts(report, "stale", "written", "unchanged")["demo/clean"] == (8, 8, 0)


def test_dry_run_counts_match_the_real_run_and_write_nothing(duck: Path) -> None:
    code, dry = run(duck, "--dry-run")
    assert code == 0 and dry["dry_run"] is True
    assert not (duck / ".mxd").exists()  # not even created
    assert mp.calls(duck, "demo/clean") == []  # downstream assets are not called
    code, real = run(duck)
    assert counts(dry, "new", "stale", "orphaned", "written") == counts(
        real, "new", "stale", "orphaned", "written"
    )
    mp.edit(duck, "s1", "edited")
    before = digest(duck / ".mxd")
    code, dry = run(duck, "--dry-run")
    assert code == 0
    assert counts(dry, "stale")["demo/final"] == (1,)
    assert digest(duck / ".mxd") == before  # byte for byte
    assert [r["status"] for r in api.runs(api.Project.load(cwd=duck))["runs"]] == ["success"]


def test_asset_failing_in_its_third_chunk(duck: Path) -> None:
    mp.behave(duck, fail_on_call=3)
    code, report = run(duck)
    assert code == 1 and report["status"] == "partial"
    rows = by_feature(report)
    assert rows["demo/clean"]["status"] == "failed"
    assert "boom on call 3" in rows["demo/clean"]["error"]
    assert rows["demo/clean"]["written"] == 4  # the first two chunks are kept
    assert rows["demo/final"]["status"] == "skipped"
    assert rows["demo/other"]["status"] == rows["demo/raw"]["status"] == "success"
    assert current(duck, "demo/clean")["id"].to_list() == ["s1", "s2", "s3", "s4"]

    mp.behave(duck)
    code, report = run(duck)
    assert code == 0
    assert counts(report, "new", "unchanged", "written")["demo/clean"] == (4, 4, 4)
    assert mp.calls(duck, "demo/clean")[-2:] == ["chunk 2 s5,s6", "chunk 2 s7,s8"]
    assert counts(report, "new", "written")["demo/final"] == (8, 8)


def test_fail_fast_stops_the_run(duck: Path) -> None:
    mp.behave(duck, fail_on_call=1)
    code, report = run(duck, "--fail-fast", "demo/raw+")
    assert code == 1 and report["status"] == "partial"
    assert [f["status"] for f in report["features"]] == ["success", "failed", "skipped"]
    (duck / "calls.log").write_text("")
    code, report = run(duck, "--fail-fast", "demo/clean")
    assert report["status"] == "failed"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_ids", "lacks id column(s) id"),
        ("null_id", "id column 'id' is null in 1 row(s)"),
        ("dupes", "duplicate ids in 2 row(s)"),
        ("foreign", "1 row(s) outside the chunk"),
        ("int_ids", "id column 'id' is Int32 in the output but String"),
        ("bad_provenance", "system column 'metaxy_provenance' differs"),
    ],
)
def test_bad_output_fails_the_asset_and_writes_nothing_of_the_chunk(
    duck: Path, kind: str, message: str
) -> None:
    mp.behave(duck, output=kind)
    code, report = run(duck)
    assert code == 1
    clean = by_feature(report)["demo/clean"]
    assert clean["status"] == "failed" and clean["written"] == 0
    assert "asset 'clean' of demo/clean" in clean["error"]
    assert message in clean["error"]
    project = api.Project.load(cwd=duck)
    with open_store(project.config.store_config(None), read_only=True) as store:
        assert not store.has(("demo", "clean"))


@pytest.mark.parametrize("kind", ["pandas", "arrow", "generator"])
def test_pandas_arrow_and_generator_outputs(duck: Path, kind: str) -> None:
    mp.behave(duck, output=kind)
    code, report = run(duck)
    assert code == 0, report
    assert current(duck, "demo/clean")["value"].to_list() == [f"V{i}" for i in range(1, 9)]


def test_early_cutoff_stops_recomputation_downstream(duck: Path) -> None:
    mp.behave(duck, output="cutoff")
    run(duck)
    mp.edit(duck, "s2", "other")
    code, report = run(duck)
    assert code == 0
    assert counts(report, "stale", "written")["demo/clean"] == (1, 1)
    # clean's data version did not change, so final has nothing to do
    assert counts(report, "stale", "written")["demo/final"] == (0, 0)


def test_filter_keys_sample_and_partition(duck: Path) -> None:
    code, report = run(duck, "--keys", "s1,s2", "demo/raw", "demo/clean")
    assert code == 0
    assert counts(report, "new", "written") == {"demo/raw": (2, 2), "demo/clean": (2, 2)}

    code, report = run(duck, "--filter", "grp = 'b'", "demo/raw")
    assert counts(report, "new", "written") == {"demo/raw": (4, 4)}

    code, first = run(duck, "--sample", "2", "--seed", "7", "demo/clean", "--dry-run")
    code, second = run(duck, "--sample", "2", "--seed", "7", "demo/clean", "--dry-run")
    # --sample picks root samples (2 of raw's, as stored) and follows them: clean's dep
    # filter keeps what it keeps of those two, the same ones in every run.
    assert counts(first, "written") == counts(second, "written")
    assert 1 <= counts(first, "written")["demo/clean"][0] <= 2

    code, report = run(duck, "--partition", "grp=a", "demo/raw")
    assert code == 0
    # grp=a holds s1 s2 s5 s7; s1 s2 are stored; the b rows are never orphaned
    assert counts(report, "new", "orphaned", "unchanged", "written") == {"demo/raw": (2, 0, 2, 2)}


def test_sample_picks_the_same_ids_in_every_run(duck: Path) -> None:
    run(duck, "demo/raw")
    run(duck, "demo/clean", "--sample", "3", "--seed", "1")
    chosen = mp.calls(duck, "demo/clean")
    (duck / "calls.log").write_text("")
    (duck / ".mxd").rename(duck / ".mxd-first")
    run(duck, "demo/raw")
    run(duck, "demo/clean", "--sample", "3", "--seed", "1")
    assert mp.calls(duck, "demo/clean") == chosen


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "valeu = 'x'"], "valeu"),
        (["--filter", "1=1; DROP TABLE demo__raw"], "filter"),
        (["--partition", "nope"], "COLUMN=VALUE"),
        (["--partition", "colour=red"], "colour"),
        (["nosuch/feature"], "nosuch/feature"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_store_alone(
    duck: Path, args: list[str], message: str
) -> None:
    run(duck)
    before = digest(duck / ".mxd")
    result = mxd("materialize", *args, cwd=duck)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert digest(duck / ".mxd") == before


def test_restricted_write_upstream_is_seen_by_the_next_full_run(duck: Path) -> None:
    """Checkpoints must never hide a change: a partial run of raw invalidates clean's."""
    run(duck)
    mp.edit(duck, "s4", "x")
    code, report = run(duck, "demo/raw", "--keys", "s4")
    assert counts(report, "stale", "written") == {"demo/raw": (1, 1)}
    code, report = run(duck)
    assert code == 0
    assert counts(report, "stale", "written")["demo/clean"] == (1, 1)
    assert counts(report, "stale", "written")["demo/final"] == (1, 1)


def test_code_version_change_recomputes_all(duck: Path) -> None:
    run(duck)
    source = (duck / "pipeline.py").read_text()
    (duck / "pipeline.py").write_text(
        source.replace('key="score", code_version="1"', 'key="score", code_version="2"')
    )
    code, report = run(duck)
    assert code == 0
    assert counts(report, "new", "written")["demo/final"] == (8, 8)
    assert counts(report, "new", "written")["demo/clean"] == (0, 0)


def test_run_history(duck: Path) -> None:
    run(duck)
    mp.behave(duck, fail_on_call=1)
    (duck / "calls.log").write_text("")
    run(duck, "--full", "demo/clean")
    result = mxd("runs", "--json", cwd=duck)
    assert result.exit_code == 0
    history = json.loads(result.stdout)["runs"]
    assert [r["status"] for r in history] == ["failed", "success"]
    assert history[0]["options"] == {"full": True, "selectors": ["demo/clean"]}
    assert history[1]["written"] == 26
    assert {f["feature"] for f in history[1]["features"]} == set(FEATURES)
    table = mxd("runs", cwd=duck)
    assert history[0]["run_id"] in table.stdout


def test_report_file_and_plain_progress(duck: Path) -> None:
    result = mxd("materialize", "--report", "out/run.json", cwd=duck)
    assert result.exit_code == 0
    saved = json.loads((duck / "out" / "run.json").read_text())
    assert saved["status"] == "success" and saved["written"] == 26
    assert "demo/clean: 8 samples to compute" in result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert "demo/final" in result.stdout and "written" in result.stdout


def test_no_asset_feature_is_skipped_but_its_rows_feed_downstream(make_project: Any) -> None:
    root = make_project(
        """
        class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"])):
            pass
        class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
                deps=[mx.FeatureDep(feature=Raw)])):
            pass
        @mx.asset(Clean)
        def clean(ctx, rows):
            return rows.select("id")
        """
    )
    code, report = run(root)
    assert code == 0
    rows = by_feature(report)
    assert rows["demo/raw"]["status"] == "skipped"
    assert "no asset" in rows["demo/raw"]["note"]
    assert rows["demo/clean"]["status"] == "up_to_date"


def test_api_without_cli(duck: Path) -> None:
    project = api.Project.load(cwd=duck)
    result = api.materialize(project, RunOptions(selectors=("+demo/clean",)))
    assert result.status == "success"
    assert [f.feature for f in result.features] == ["demo/raw", "demo/clean"]
    assert result.written == 16
