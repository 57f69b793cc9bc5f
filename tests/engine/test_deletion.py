"""Deletion plans and their execution on both backends, with exact counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from mxd_cli import api
from mxd_cli.definitions.keys import FeatureKey
from mxd_cli.engine.deletion import (
    DeletionPlan,
    execute_deletion,
    parse_feature_filters,
    plan_deletion,
)
from mxd_cli.errors import FilterError
from mxd_cli.store import MetadataStore, open_store
from mxd_cli.store import columns as c
from tests import populated
from tests.conftest import write_project
from tests.pipeline_runner import run_step
from tests.populated import BACKENDS, clone

PRODUCTS = FeatureKey.parse("shop/products")
REVIEWS = FeatureKey.parse("shop/reviews")
GEAR = "category = 'gear'"  # p004, p006, p008


@pytest.fixture(scope="module", params=BACKENDS)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return populated.template(tmp_path_factory, request.param)


@pytest.fixture
def project(template: Path, tmp_path: Path) -> api.Project:
    return api.Project.load(cwd=clone(template, tmp_path / "qs"))


@pytest.fixture
def store(project: api.Project) -> Iterator[MetadataStore]:
    with open_store(project.config.store_config()) as opened:
        yield opened


def physical(store: MetadataStore, key: FeatureKey) -> pl.DataFrame:
    frame = store.scan(key.parts)
    assert frame is not None
    return frame.collect()


def current_ids(project: api.Project, store: MetadataStore, key: FeatureKey) -> list[str]:
    node = project.graph[key]
    frame = store.read(
        key.parts, node.spec.id_columns, feature_version=project.versions.feature_version(key)
    )
    assert frame is not None
    return sorted(frame.collect()["product_id"].to_list())


def plan(
    project: api.Project,
    store: MetadataStore,
    filters: dict[str, list[str] | None],
    **options: object,
) -> DeletionPlan:
    targets = {
        FeatureKey.parse(k): None
        if texts is None
        else parse_feature_filters(project.graph[FeatureKey.parse(k)], texts, store)
        for k, texts in filters.items()
    }
    return plan_deletion(project.graph, project.versions, store, targets, **options)  # type: ignore[arg-type]


def counts(p: DeletionPlan) -> dict[str, int]:
    return {str(f.feature): f.matched for f in p.features}


def test_soft_delete_appends_one_tombstone_per_matched_sample(
    project: api.Project, store: MetadataStore
) -> None:
    chosen = plan(project, store, {"shop/products": [GEAR]})
    assert counts(chosen) == {"shop/products": 3}
    at = datetime.now(timezone.utc) + timedelta(seconds=1)
    [result] = execute_deletion(chosen, store, project.versions, at=at)
    assert (result.matched, result.deleted, result.rows) == (3, 3, 3)
    assert current_ids(project, store, PRODUCTS) == ["p001", "p002", "p003", "p005", "p007"]
    rows = physical(store, PRODUCTS)
    assert rows.height == 11
    tombstones = rows.filter(pl.col(c.DELETED_AT).is_not_null())
    assert sorted(tombstones["product_id"]) == ["p004", "p006", "p008"]
    assert tombstones[c.FEATURE_VERSION].unique().to_list() == [
        project.versions.feature_version(PRODUCTS)
    ]
    assert physical(store, REVIEWS).height == 8  # nothing else touched


def test_filters_apply_to_the_latest_row_and_hard_delete_removes_history(
    project: api.Project, store: MetadataStore
) -> None:
    csv = project.config.root / "data" / "products.csv"
    csv.write_text(csv.read_text().replace("Headlamp,", "Head Torch,"))
    run_step(project)  # p006 now has two rows: the old title and the new one
    assert physical(store, PRODUCTS).height == 9
    assert counts(plan(project, store, {"shop/products": ["title = 'Headlamp'"]})) == {
        "shop/products": 0
    }
    # Found through its rows (any one matching), chosen by its latest row.
    assert counts(plan(project, store, {"shop/products": ["title = 'Head Torch'"]})) == {
        "shop/products": 1
    }
    soft = plan(project, store, {"shop/products": ["title LIKE 'Head%'"]})
    [done] = execute_deletion(soft, store, project.versions)
    assert (done.matched, done.deleted) == (1, 1)  # one tombstone, of the latest row
    assert physical(store, PRODUCTS).filter(pl.col(c.DELETED_AT).is_not_null())[
        "title"
    ].to_list() == ["Head Torch"]
    chosen = plan(project, store, {"shop/products": [GEAR]}, mode="hard")
    assert [(f.matched, f.physical_rows) for f in chosen.features] == [(3, 5)]
    [result] = execute_deletion(chosen, store, project.versions)
    assert (result.matched, result.deleted, result.rows) == (3, 3, 5)
    rows = physical(store, PRODUCTS)
    assert rows.height == 5
    assert sorted(rows["product_id"]) == ["p001", "p002", "p003", "p005", "p007"]


def test_hard_delete_purges_soft_deleted_samples_too(
    project: api.Project, store: MetadataStore
) -> None:
    execute_deletion(plan(project, store, {"shop/products": [GEAR]}), store, project.versions)
    assert counts(plan(project, store, {"shop/products": [GEAR]})) == {"shop/products": 0}
    chosen = plan(project, store, {"shop/products": [GEAR]}, mode="hard")
    assert [(f.matched, f.physical_rows) for f in chosen.features] == [(3, 6)]
    [result] = execute_deletion(chosen, store, project.versions)
    assert (result.deleted, result.rows) == (3, 6)
    assert sorted(physical(store, PRODUCTS)["product_id"]) == [
        "p001", "p002", "p003", "p005", "p007",
    ]  # fmt: skip
    everything = plan(project, store, {"shop/products": None}, mode="hard")
    assert [(f.matched, f.physical_rows) for f in everything.features] == [(5, 5)]
    execute_deletion(everything, store, project.versions)
    assert physical(store, PRODUCTS).height == 0


def test_cascade_follows_both_branches_of_the_diamond(
    project: api.Project, store: MetadataStore
) -> None:
    chosen = plan(project, store, {"shop/products": [GEAR]}, cascade=True)
    assert counts(chosen) == {
        "shop/products": 3,
        "shop/pricing": 3,
        "shop/text_stats": 3,
        "shop/ranking": 3,
    }
    via = {str(f.feature): [str(k) for k in f.cascade_from] for f in chosen.features}
    assert via["shop/ranking"] == ["shop/text_stats", "shop/pricing"]
    assert [f.targeted for f in chosen.features] == [True, False, False, False]
    results = execute_deletion(chosen, store, project.versions)
    assert [r.deleted for r in results] == [3, 3, 3, 3]
    for key in ("shop/pricing", "shop/text_stats", "shop/ranking"):
        assert current_ids(project, store, FeatureKey.parse(key)) == [
            "p001", "p002", "p003", "p005", "p007",
        ]  # fmt: skip


def test_cascade_through_a_renamed_dependency(project: api.Project, store: MetadataStore) -> None:
    # pricing reads reviews with rating renamed to review_rating; text_stats does not read it.
    chosen = plan(project, store, {"shop/reviews": ["rating < 4.0"]}, cascade=True)
    assert counts(chosen) == {"shop/reviews": 2, "shop/pricing": 2, "shop/ranking": 2}
    assert sorted(chosen.features[0].ids(store)["product_id"]) == ["p004", "p007"]


def test_without_filter_every_current_row_matches(
    project: api.Project, store: MetadataStore
) -> None:
    chosen = plan(project, store, {"shop/reviews": None}, mode="hard")
    assert counts(chosen) == {"shop/reviews": 8}
    execute_deletion(chosen, store, project.versions)
    assert physical(store, REVIEWS).height == 0


def test_unknown_column_is_a_filter_error_naming_the_closest(
    project: api.Project, store: MetadataStore
) -> None:
    with pytest.raises(FilterError) as caught:
        parse_feature_filters(project.graph[PRODUCTS], ["categroy = 'gear'"], store)
    assert "unknown column 'categroy'" in caught.value.message
    assert caught.value.hint is not None and "category" in caught.value.hint
    system = parse_feature_filters(
        project.graph[PRODUCTS], ["metaxy_created_at IS NOT NULL"], store
    )
    assert system is not None and system.columns == {"metaxy_created_at"}


LINEAGE = """
class Events(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/events",
        id_columns=["user_id", "event_id"])):
    pass

class PerUser(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/per_user", id_columns=["user_id"],
        deps=[mx.FeatureDep(feature=Events, lineage=mx.aggregation(on=["user_id"]))])):
    pass

class Videos(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/videos", id_columns=["vid"])):
    pass

class Frames(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/frames",
        id_columns=["video_id", "frame"],
        deps=[mx.FeatureDep(feature=Videos, rename={"vid": "video_id"},
                            lineage=mx.expansion(on=["video_id"]))])):
    pass
"""


def _stored(project: api.Project, key: str, frame: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    version = project.versions.feature_version(FeatureKey.parse(key))
    return key, frame.with_columns(
        pl.lit(f"dv-{key}").alias(c.DATA_VERSION),
        pl.lit(version).alias(c.FEATURE_VERSION),
        pl.lit(at, dtype=c.TIMESTAMP).alias(c.CREATED_AT),
        pl.lit(at, dtype=c.TIMESTAMP).alias(c.UPDATED_AT),
        pl.lit(None, dtype=c.TIMESTAMP).alias(c.DELETED_AT),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_cascade_maps_aggregation_and_expansion_on_their_key(tmp_path: Path, backend: str) -> None:
    store_config = (
        '[stores.dev]\ntype = "duckdb"\n[stores.dev.config]\ndatabase = "s.duckdb"\n'
        if backend == "duckdb"
        else '[stores.dev]\ntype = "delta"\n[stores.dev.config]\nroot_path = "delta"\n'
    )
    root = write_project(
        tmp_path / "p",
        LINEAGE,
        config=f'project = "t"\nentrypoints = ["pipeline"]\n{store_config}',
    )
    project = api.Project.load(cwd=root)
    tables = dict(
        [
            _stored(
                project,
                "demo/events",
                pl.DataFrame({"user_id": ["u1", "u1", "u2"], "event_id": [1, 2, 3]}),
            ),
            _stored(project, "demo/per_user", pl.DataFrame({"user_id": ["u1", "u2"]})),
            _stored(project, "demo/videos", pl.DataFrame({"vid": ["v1", "v2"]})),
            _stored(
                project,
                "demo/frames",
                pl.DataFrame({"video_id": ["v1", "v1", "v2"], "frame": [0, 1, 0]}),
            ),
        ]
    )
    with open_store(project.config.store_config()) as store:
        for key, frame in tables.items():
            store.append(FeatureKey.parse(key).parts, frame)
        chosen = plan(
            project, store, {"demo/events": ["event_id = 2"], "demo/videos": ["vid = 'v1'"]},
            cascade=True,
        )  # fmt: skip
        assert counts(chosen) == {
            "demo/events": 1,
            "demo/videos": 1,
            "demo/per_user": 1,  # u1 aggregates event 2
            "demo/frames": 1,  # v1: one sample of the expansion...
        }
        frames_plan = [f for f in chosen.features if str(f.feature) == "demo/frames"]
        assert frames_plan[0].current == 2  # ...and both of its frames
        done = execute_deletion(chosen, store, project.versions)
        assert [(str(r.feature), r.deleted, r.rows) for r in done][-1] == ("demo/frames", 1, 2)
        frames = store.read(("demo", "frames"), ["video_id", "frame"])
        per_user = store.read(("demo", "per_user"), ["user_id"])
        assert frames is not None and per_user is not None
        assert frames.select("video_id", "frame").collect().rows() == [("v2", 0)]
        assert per_user.select("user_id").collect().rows() == [("u2",)]
