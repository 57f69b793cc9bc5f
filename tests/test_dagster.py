"""mxd_cli.dagster with real Dagster, in process and through the ``dagster`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mxd_cli import api
from mxd_cli.dagster import DELETE_JOB, MATERIALIZE_JOB, OBSERVE_JOB, build_definitions
from tests import populated
from tests.cli.test_definitions import mxd
from tests.conftest import CHAIN
from tests.populated import fresh_quickstart

# Dagster 1.9's Config reads pydantic's model_fields off instances, which pydantic >= 2.11
# deprecates; that is Dagster's to fix (later versions do), not a fault of mxd.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_fields' attribute on the instance:DeprecationWarning"
)

FEATURES = ["shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking"]
COUNTS = ["new", "stale", "orphaned", "written", "deleted"]


def materializations(result: Any) -> dict[str, dict[str, Any]]:
    """Per feature: the materialization's metadata values, plus its data version."""
    found = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        values = {k: v.value for k, v in m.metadata.items()}
        values["data_version"] = m.tags.get("dagster/data_version")
        found["/".join(m.asset_key.path)] = values
    return found


def observations(result: Any) -> dict[str, dict[str, Any]]:
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_OBSERVATION":
            o = event.event_specific_data.asset_observation
            values = {k: v.value for k, v in o.metadata.items()}
            values["data_version"] = o.tags.get("dagster/data_version")
            found["/".join(o.asset_key.path)] = values
    return found


def run_job(defs: dg.Definitions, name: str, **kwargs: Any) -> Any:
    # resolve_job_def is Dagster >= 1.10's name; 1.9 (the oldest supported) has get_job_def.
    resolve = getattr(defs, "resolve_job_def", None) or defs.get_job_def
    return resolve(name).execute_in_process(**kwargs)


def asset_specs(defs: dg.Definitions) -> list[dg.AssetSpec]:
    if hasattr(defs, "resolve_all_asset_specs"):  # Dagster >= 1.10
        return list(defs.resolve_all_asset_specs())
    return [spec for a in defs.assets or [] for spec in a.specs]  # type: ignore[union-attr]


def mxd_counts(root: Path) -> dict[str, list[int]]:
    result = mxd("materialize", "--json", cwd=root)
    assert result.exit_code == 0, result.output
    return {f["feature"]: [f[c] for c in COUNTS] for f in json.loads(result.stdout)["features"]}


def dagster_counts(found: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    return {k: [found[k][f"mxd/{c}"] for c in COUNTS] for k in FEATURES}


def test_one_asset_per_feature_with_versions_and_metadata(quickstart: Path) -> None:
    defs = build_definitions(quickstart / "metaxy.toml")
    project = api.Project.load(quickstart / "metaxy.toml")
    specs = {"/".join(s.key.path): s for s in asset_specs(defs)}
    assert sorted(specs) == sorted(FEATURES)
    pricing = specs["shop/pricing"]
    assert {"/".join(d.asset_key.path) for d in pricing.deps} == {"shop/products", "shop/reviews"}
    assert pricing.code_version == project.versions.feature_version(
        project.graph.resolve_key("shop/pricing")
    )
    assert (pricing.group_name, pricing.kinds, pricing.description) == (
        "shop",
        {"mxd"},
        "Rating per unit of price.",
    )
    meta = {k: getattr(v, "value", v) for k, v in pricing.metadata.items()}
    assert meta["mxd/table"] == "shop__pricing"
    assert meta["mxd/id_columns"] == ["product_id"]
    assert [(f["field"], f["code_version"]) for f in meta["mxd/fields"]] == [("value_score", "1")]
    assert meta["mxd/feature_version"] == pricing.code_version
    for job in (MATERIALIZE_JOB, OBSERVE_JOB, DELETE_JOB):
        assert job in {j.name for j in defs.jobs or []}


def test_counts_equal_mxd_materialize_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    by_mxd = fresh_quickstart(tmp_path / "mxd", "duckdb")
    by_dagster = fresh_quickstart(tmp_path / "dagster", "duckdb")
    defs = build_definitions(by_dagster / "metaxy.toml")

    first = run_job(defs, MATERIALIZE_JOB)
    assert first.success
    found = materializations(first)
    assert dagster_counts(found) == mxd_counts(by_mxd)
    assert all(
        found[k]["mxd/written"] == 8 and found[k]["dagster/row_count"] == 8 for k in FEATURES
    )
    # The data version is the content fingerprint `mxd observe` reports; the samples and their
    # data versions are the same in both stores, so the fingerprints are too.
    project = api.Project.load(by_dagster / "metaxy.toml")
    observed = {f["feature"]: f["fingerprint"] for f in api.observe(project)["features"]}
    assert {k: found[k]["data_version"] for k in FEATURES} == observed
    other = api.Project.load(by_mxd / "metaxy.toml")
    assert {f["feature"]: f["fingerprint"] for f in api.content(other)["features"]} == observed
    assert {f["status"] for f in api.status(project)["features"]} == {"up_to_date"}

    for root in (by_mxd, by_dagster):  # one price changes: one sample, three features
        csv = root / "data" / "products.csv"
        csv.write_text(csv.read_text().replace(",119.00,", ",109.00,"))
    second = materializations(run_job(defs, MATERIALIZE_JOB))
    assert dagster_counts(second) == mxd_counts(by_mxd)
    assert {k: second[k]["mxd/stale"] for k in FEATURES} == {
        "shop/products": 1, "shop/reviews": 0, "shop/pricing": 1, "shop/text_stats": 0,
        "shop/ranking": 1,
    }  # fmt: skip
    assert second["shop/reviews"]["data_version"] == found["shop/reviews"]["data_version"]
    assert second["shop/pricing"]["data_version"] != found["shop/pricing"]["data_version"]

    third = materializations(run_job(defs, MATERIALIZE_JOB))
    assert {k: third[k]["mxd/written"] for k in FEATURES} == dict.fromkeys(FEATURES, 0)
    assert {k: third[k]["mxd/status"] for k in FEATURES} == dict.fromkeys(FEATURES, "up_to_date")
    assert {k: third[k]["data_version"] for k in FEATURES} == {
        k: second[k]["data_version"] for k in FEATURES
    }
    history = api.runs(project, limit=100)["runs"]
    assert len(history) == 15  # each Dagster step is one mxd run, recorded as such
    assert {third[k]["mxd/run_id"] for k in FEATURES} <= {r["run_id"] for r in history}


FAILING = (
    CHAIN
    + """
@mx.asset(Raw)
def raw(ctx):
    ctx.add_metadata(source="inline", sizes={"rows": 3})
    return pl.DataFrame({"id": [1, 2, 3], "value": ["A", "B", "C"]})

@mx.asset(Clean)
def clean(ctx, rows):
    raise ValueError("boom")
"""
)


def test_an_asset_failure_is_a_failed_step_with_mxds_message(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(FAILING)
    result = run_job(build_definitions(root / "metaxy.toml"), MATERIALIZE_JOB, raise_on_error=False)
    assert not result.success
    raw = materializations(result)["demo/raw"]
    assert (raw["mxd/written"], raw["source"], raw["sizes"]) == (3, "inline", {"rows": 3})
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "demo__clean"
    description = failure.step_failure_data.user_failure_data.description
    assert "demo/clean failed: " in description
    assert "asset 'clean' of demo/clean raised ValueError: boom" in description


PARTITIONED = """
class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Raw)],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

ROWS = pl.DataFrame({"id": [1, 2, 3], "day": ["d1", "d1", "d2"], "value": ["a", "b", "c"]})

@mx.asset(Raw)
def raw(ctx):
    part = dict(ctx.partition or {})
    ctx.add_metadata(partition=part)
    return ROWS.filter(pl.col("day") == part["day"]) if "day" in part else ROWS

@mx.asset(Clean)
def clean(ctx, rows):
    return rows.select("id", "day", value=pl.col("value").str.to_uppercase())
"""


def test_partitions_map_to_mxd_partitions(make_project: Callable[..., Path]) -> None:
    root = make_project(PARTITIONED)
    days = dg.StaticPartitionsDefinition(["d1", "d2"])
    defs = build_definitions(root / "metaxy.toml", partitions={"day": days})

    def run(day: str) -> dict[str, dict[str, Any]]:
        result = run_job(defs, MATERIALIZE_JOB, partition_key=day)
        assert result.success
        return materializations(result)

    d1 = run("d1")
    assert d1["demo/raw"]["partition"] == {"day": "d1"}  # ctx.partition, via ctx.add_metadata
    counts = {k: (v["mxd/new"], v["mxd/orphaned"], v["mxd/written"]) for k, v in d1.items()}
    assert counts == {"demo/raw": (2, 0, 2), "demo/clean": (2, 0, 2)}
    d2 = run("d2")  # d1's samples are outside the partition: not orphaned
    counts = {k: (v["mxd/new"], v["mxd/orphaned"], v["mxd/written"]) for k, v in d2.items()}
    assert counts == {"demo/raw": (1, 0, 1), "demo/clean": (1, 0, 1)}
    assert d2["demo/clean"]["dagster/row_count"] == 1  # this partition's samples
    again = run("d1")
    assert {k: v["mxd/written"] for k, v in again.items()} == {"demo/raw": 0, "demo/clean": 0}
    assert again["demo/raw"]["data_version"] == d1["demo/raw"]["data_version"]
    assert again["demo/raw"]["data_version"] != d2["demo/raw"]["data_version"]


def test_a_partition_column_a_feature_lacks_fails_with_mxds_hint(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(PARTITIONED)
    days = dg.StaticPartitionsDefinition(["d1"])
    defs = build_definitions(root / "metaxy.toml", partitions={"dya": days})
    result = run_job(defs, MATERIALIZE_JOB, partition_key="d1", raise_on_error=False)
    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["demo__raw"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert "partition column 'dya' is not a column of feature demo/raw" in description
    assert "Hint: did you mean 'day'?" in description


def test_observe_and_delete_jobs(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    quickstart = populated.clone(populated.template(tmp_path_factory, "duckdb"), tmp_path / "qs")
    defs = build_definitions(quickstart / "metaxy.toml")
    project = api.Project.load(quickstart / "metaxy.toml")
    held = {f["feature"]: f for f in api.content(project)["features"]}

    seen = observations(run_job(defs, OBSERVE_JOB))
    assert {k: (v["dagster/row_count"], v["data_version"]) for k, v in seen.items()} == {
        k: (8, held[k]["fingerprint"]) for k in FEATURES
    }
    assert seen["shop/pricing"]["mxd/behind_stale"] == 0

    config = {"feature": "shop/products", "filters": ["category = 'gear'"], "cascade": True}
    deleted = run_job(defs, DELETE_JOB, run_config={"ops": {"delete_metadata": {"config": config}}})
    assert deleted.success
    after = observations(deleted)
    assert {k: (v["mxd/deleted"], v["dagster/row_count"]) for k, v in after.items()} == {
        "shop/products": (3, 5), "shop/pricing": (3, 5), "shop/text_stats": (3, 5),
        "shop/ranking": (3, 5),
    }  # fmt: skip
    status = {f["feature"]: f for f in api.status(project)["features"]}
    assert (status["shop/products"]["status"], status["shop/products"]["new"]) == (
        "needs_update",
        3,
    )

    bad = {"feature": "shop/products", "filters": ["price > (select 1)"]}
    failed = run_job(
        defs,
        DELETE_JOB,
        run_config={"ops": {"delete_metadata": {"config": bad}}},
        raise_on_error=False,
    )
    (failure,) = failed.get_step_failure_events()
    assert "subquer" in failure.step_failure_data.user_failure_data.description.lower()


OUTSIDE = (
    CHAIN
    + """
import os

if os.environ.get("WITH_RAW"):
    @mx.asset(Raw)
    def raw(ctx):
        return pl.DataFrame({"id": [1, 2], "value": ["A", "B"]})

@mx.asset(Clean)
def clean(ctx, rows):
    return rows.select("id", "value")
"""
)


def test_features_written_outside_mxd_are_observable_source_assets(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(OUTSIDE)
    monkeypatch.setenv("WITH_RAW", "1")
    assert mxd("materialize", "--json", cwd=root).exit_code == 0
    monkeypatch.delenv("WITH_RAW")
    defs = build_definitions(root / "metaxy.toml")
    raw = next(a for a in defs.assets or [] if dg.AssetKey(["demo", "raw"]) in a.keys)
    assert isinstance(raw, dg.AssetsDefinition)
    assert not raw.is_materializable and raw.is_observable
    implicit = getattr(defs, "resolve_implicit_global_asset_job_def", None)
    job = (implicit or defs.get_implicit_global_asset_job_def)()
    result = job.execute_in_process(asset_selection=[dg.AssetKey(["demo", "raw"])])
    seen = observations(result)["demo/raw"]
    project = api.Project.load(root / "metaxy.toml")
    (held,) = api.content(project, ["demo/raw"])["features"]
    assert (seen["dagster/row_count"], seen["data_version"]) == (2, held["fingerprint"])


def test_dagster_asset_materialize_command_on_the_quickstart_definitions(
    quickstart: Path, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset", "materialize", "-f", str(quickstart / "dagster_defs.py"), "--select", "*",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        written = {}
        for feature in FEATURES:
            event = instance.get_latest_materialization_event(dg.AssetKey(feature.split("/")))
            assert event is not None and event.asset_materialization is not None
            written[feature] = event.asset_materialization.metadata["mxd/written"].value
    assert written == dict.fromkeys(FEATURES, 8)
    project = api.Project.load(quickstart / "metaxy.toml")
    assert {f["status"] for f in api.status(project)["features"]} == {"up_to_date"}
