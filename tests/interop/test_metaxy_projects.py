"""A Metaxy project, as its users wrote it, driven by the ``mxd`` command (issue 12, item 7).

The project declares its features with Metaxy's own classes (``metaxy.BaseFeature``,
``FeatureSpec``, ``FeatureDep`` with rename, select, filters, optional deps, aggregation
and expansion lineage, field deps, docstrings) and a ``metaxy.toml`` naming Metaxy's store
class. It runs in the ``mxd-metaxy`` environment (mxd installed with Metaxy beside it, see
``environments.py``), through the real console script, as a subprocess.

Checked: ``list``, ``graph``, ``check``, ``status``, ``observe`` and ``delete`` work on the
project unchanged; the feature, field and code versions mxd computes equal Metaxy's own (the
project loaded by Metaxy in the same environment), and the specs mxd records in the store's
snapshot table are byte for byte Metaxy's serialization; once a module of mxd assets is
added to the entrypoints, ``materialize`` runs; and Metaxy itself (the pinned environment)
then finds nothing to do in the store mxd wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.interop.environments import Environment
from tests.interop.metaxy_process import MetaxyProcess
from tests.interop.tables import StoreFiles

HERE = Path(__file__).resolve().parent
VERSIONS_SCRIPT = HERE / "driver" / "project_versions.py"

FEATURES = '''\
"""Features of a Metaxy project: nothing here knows about mxd."""

__metaxy_project__ = "demo"

import metaxy as mx
from metaxy.models.lineage import LineageRelationship


class Raw(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="demo/raw",
        id_columns=["sample_uid"],
        fields=[
            mx.FieldSpec(key="audio", code_version="1"),
            mx.FieldSpec(key="frames", code_version="2"),
        ],
    ),
):
    """Raw recordings, one per sample."""

    sample_uid: str
    path: str
    kind: str


class Labels(
    mx.BaseFeature,
    spec=mx.FeatureSpec(key="demo/labels", id_columns=["sample_uid"], fields=["label"]),
):
    sample_uid: str
    label: str


class Clean(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="demo/clean",
        id_columns=["sample_uid"],
        deps=[
            mx.FeatureDep(
                feature=Raw,
                rename={"path": "raw_path"},
                select=("raw_path", "kind"),
                filters=["kind != 'skip'"],
            ),
            mx.FeatureDep(feature=Labels, optional=True),
        ],
        fields=[
            mx.FieldSpec(key="audio", code_version="1", deps=[mx.FieldDep(feature=Raw, fields=["audio"])]),
            mx.FieldSpec(key="summary", code_version="3", deps=mx.SpecialFieldDep.ALL),
        ],
        metadata={"tags": ["cleaning"]},
    ),
):
    """Cleaned recordings with their optional label."""

    sample_uid: str


class Chunks(
    mx.BaseFeature,
    spec=mx.FeatureSpec(key="demo/chunks", id_columns=["video_id", "chunk_id"], fields=["emb"]),
):
    video_id: str
    chunk_id: str


class Video(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="demo/video",
        id_columns=["video_id"],
        deps=[mx.FeatureDep(feature=Chunks, lineage=LineageRelationship.aggregation(on=["video_id"]))],
        fields=["emb"],
    ),
):
    video_id: str


class Frames(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="demo/frames",
        id_columns=["video_id", "frame_id"],
        deps=[mx.FeatureDep(feature=Video, lineage=LineageRelationship.expansion(on=["video_id"]))],
        fields=[mx.FieldSpec(key="emb", code_version="2")],
    ),
):
    video_id: str
    frame_id: str
'''

ASSETS = '''\
"""mxd assets for the Metaxy features (the only module that knows about mxd)."""

import polars as pl

import demo_features as f
import mxd_cli as mx


def _by_field(**values):
    return {k: v for k, v in values.items()}


@mx.asset(f.Raw)  # a Metaxy class
def raw(ctx):
    ids = ["s1", "s2", "s3", "s4"]
    return pl.DataFrame(
        {
            "sample_uid": ids,
            "path": [f"/data/{i}.wav" for i in ids],
            "kind": ["ok", "ok", "skip", "ok"],
            "metaxy_provenance_by_field": [_by_field(audio=f"a-{i}", frames=f"f-{i}") for i in ids],
        }
    )


@mx.asset("demo/labels")  # or its key
def labels(ctx):
    return pl.DataFrame(
        {
            "sample_uid": ["s1"],
            "label": ["cat"],
            "metaxy_provenance_by_field": [_by_field(label="l-s1")],
        }
    )


@mx.asset(f.Clean)
def clean(ctx, rows):
    return rows


@mx.asset("demo/chunks")
def chunks(ctx):
    keys = [("v1", "c1"), ("v1", "c2"), ("v2", "c1")]
    return pl.DataFrame(
        {
            "video_id": [v for v, _ in keys],
            "chunk_id": [c for _, c in keys],
            "metaxy_provenance_by_field": [_by_field(emb=f"e-{v}{c}") for v, c in keys],
        }
    )


@mx.asset(f.Video)
def video(ctx, rows):
    keep = [c for c in rows.columns if c == "video_id" or c.startswith("metaxy_")]
    return rows.select(keep).unique(subset=["video_id"], keep="first")


@mx.asset(f.Frames)
def frames(ctx, rows):
    children = pl.DataFrame({"video_id": ["v1", "v1", "v2"], "frame_id": ["0", "1", "0"]})
    return rows.join(children, on="video_id")
'''

RAW_SAMPLES = {
    "strings": ["sample_uid", "path", "kind"],
    "structs": {"metaxy_provenance_by_field": ["audio", "frames"]},
    "rows": [
        {
            "sample_uid": i,
            "path": f"/data/{i}.wav",
            "kind": kind,
            "metaxy_provenance_by_field": {"audio": f"a-{i}", "frames": f"f-{i}"},
        }
        for i, kind in (("s1", "ok"), ("s2", "ok"), ("s3", "skip"), ("s4", "ok"))
    ],
}
ROOT_SAMPLES = {
    "demo/raw": RAW_SAMPLES,
    "demo/labels": {
        "strings": ["sample_uid", "label"],
        "structs": {"metaxy_provenance_by_field": ["label"]},
        "rows": [
            {"sample_uid": "s1", "label": "cat", "metaxy_provenance_by_field": {"label": "l-s1"}}
        ],
    },
    "demo/chunks": {
        "strings": ["video_id", "chunk_id"],
        "structs": {"metaxy_provenance_by_field": ["emb"]},
        "rows": [
            {"video_id": v, "chunk_id": c, "metaxy_provenance_by_field": {"emb": f"e-{v}{c}"}}
            for v, c in (("v1", "c1"), ("v1", "c2"), ("v2", "c1"))
        ],
    },
}
KEYS = ["demo/chunks", "demo/labels", "demo/raw", "demo/clean", "demo/video", "demo/frames"]


def config(entrypoints: list[str], store: Path) -> str:
    return textwrap.dedent(
        f"""\
        project = "demo"
        entrypoints = {json.dumps(entrypoints)}
        store = "dev"

        [stores.dev]
        type = "metaxy.ext.polars.handlers.delta.DeltaMetadataStore"

        [stores.dev.config]
        root_path = "{store}"
        """
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "demo_features.py").write_text(FEATURES)
    (root / "metaxy.toml").write_text(config(["demo_features"], root / "metadata"))
    return root


def run(env: Environment, root: Path, *args: str, code: int = 0) -> Any:
    """``mxd --json ARGS`` in the project folder; its parsed output."""
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("METAXY_", "PYTHON"))}
    done = subprocess.run(
        [str(env.bin("mxd")), "--json", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=300,
        check=False,
    )
    assert done.returncode == code, f"mxd {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None


def metaxy_view(env: Environment, root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(env.python), str(VERSIONS_SCRIPT), str(root / "metaxy.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_mxd_reads_a_metaxy_project_unchanged(mxd_metaxy_env: Environment, project: Path) -> None:
    env = mxd_metaxy_env
    theirs = metaxy_view(env, project)
    listed = run(env, project, "list")
    ours = {f["feature"]: f for f in listed["features"]}
    assert sorted(ours) == sorted(KEYS) == sorted(theirs["order"])
    for key, want in theirs["features"].items():
        got = ours[key]
        assert got["feature_version"] == want["feature_version"], key
        assert got["feature_code_version"] == want["code_version"], key
        assert {f["field"]: f["version"] for f in got["fields"]} == want["field_versions"], key
        assert got["id_columns"] == want["id_columns"], key
        assert got["deps"] == want["deps"], key
        assert got["defined_at"].startswith(str(project / "demo_features.py")), key
    assert ours["demo/clean"]["description"] == "Cleaned recordings with their optional label."
    assert ours["demo/clean"]["tags"] == ["cleaning"]

    graph = run(env, project, "graph", "--format", "mermaid")
    assert graph is not None
    checked = run(env, project, "check")
    assert checked["ok"] and checked["features"] == 6 and checked["assets"] == 0
    status = run(env, project, "status")
    assert {f["feature"]: f["status"] for f in status["features"]}["demo/raw"] == "root"
    observed = run(env, project, "observe")
    assert [f["rows"] for f in observed["features"]] == [0] * 6
    deleted = run(env, project, "delete", "demo/raw", "--filter", "kind = 'skip'", "--dry-run")
    assert deleted["features"][0]["matched"] == 0


def test_attached_assets_materialize_and_metaxy_continues(
    mxd_metaxy_env: Environment, metaxy: MetaxyProcess, project: Path
) -> None:
    env = mxd_metaxy_env
    (project / "demo_assets.py").write_text(ASSETS)
    store = project / "metadata"
    (project / "metaxy.toml").write_text(config(["demo_features", "demo_assets"], store))

    report = run(env, project, "materialize")
    assert report["status"] == "success", report
    written = {f["feature"]: (f["written"], f["rows"]) for f in report["features"]}
    assert written == {
        "demo/chunks": (3, 3),
        "demo/labels": (1, 1),
        "demo/raw": (4, 4),
        "demo/clean": (3, 3),  # s3 is filtered out ("skip")
        "demo/video": (2, 2),
        "demo/frames": (2, 3),  # an expansion: 2 videos (samples) into 3 frames (rows)
    }
    again = run(env, project, "status")
    assert {f["status"] for f in again["features"]} == {"up_to_date"}

    # The specs mxd recorded are Metaxy's serialization, character for character.
    theirs = metaxy_view(env, project)
    snapshots = StoreFiles("delta", store).tables(["metaxy-system/feature_versions"])
    recorded = snapshots["metaxy-system/feature_versions"]
    assert recorded is not None
    specs = dict(recorded.select("feature_key", "feature_spec").iter_rows())
    assert specs == {k: f["feature_spec"] for k, f in theirs["features"].items()}
    versions = dict(recorded.select("feature_key", "metaxy_feature_version").iter_rows())
    assert versions == {k: f["feature_version"] for k, f in theirs["features"].items()}

    # Metaxy 0.1.11 itself (the pinned environment) finds the store up to date.
    graph = {
        "project": "demo",
        "length": 8,
        "features": [theirs["features"][k]["dump"] for k in theirs["order"]],
    }
    seen = metaxy.call(
        "check",
        graph=graph,
        store={"backend": "delta", "path": str(store), "algorithm": "xxhash32"},
        samples=ROOT_SAMPLES,
        read=True,
    )
    assert all(c == {"new": 0, "stale": 0, "orphaned": 0} for c in seen["features"].values())
    clean = pl.DataFrame(seen["rows"]["demo/clean"])
    assert sorted(clean["sample_uid"]) == ["s1", "s2", "s4"]
