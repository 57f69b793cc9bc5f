"""A branch store (``fallback_stores = ["prod"]``) run by mxd, seen by Metaxy 0.1.11.

mxd builds ``prod`` in three steps (s6 removed, then ``br/clean``'s audio code version
changed: prod holds tombstones and two versions of ``br/clean`` and ``br/joined``), then
runs two steps on ``branch``: two samples' audio edited (the branch adopts ``br/video``,
``br/clean`` and ``br/joined``), then the code version changed back (the rows of the older
version, s6's tombstone included, are current again). A copy of prod's files made before
the branch runs, ``ref``, is continued by Metaxy with the same steps: the branch must
behave as that copy of prod does. After each branch step:

- mxd's increments on the branch equal Metaxy's on ``ref``, feature by feature, and mxd
  wrote just those (``written``, ``deleted``); a feature mxd adopts took one row per
  (sample, feature version) of prod's table. mxd resolves a feature again after adopting
  it, so an adoption that took too few rows (only the current version, no tombstones)
  does not show on the branch alone, where mxd recomputes what is missing: it shows here,
  as more work than Metaxy does on the copy of prod;
- Metaxy opening the branch with prod as its fallback store (it reads each upstream from
  the branch if the branch has its table, else from prod): for every feature the branch
  holds, ``resolve_update`` finds nothing to do;
- the current rows (ids and hash columns) Metaxy reads there (falling back for the
  features the branch lacks), mxd reads through its session, and Metaxy reads in ``ref``
  are equal;
- the features the branch does not hold (``br/labels``, a root left alone, and
  ``br/thumbs``, whose field deps skip the edited audio) are served by prod: mxd's status
  says up to date with ``source == "prod"``. Metaxy's ``resolve_update`` reads a feature's
  own rows without fallback, so it reports every sample of them new: the documented,
  intended divergence, asserted as such.

Prod's files are byte-for-byte the same after the branch steps, and both tools find
nothing to do in prod.

Metaxy's side runs with its Polars engine (as the differential's handovers do): on DuckDB
its native engine fails on ``br/joined``, whose upstreams come from two stores (ibis:
"Multiple backends found for this expression"), a limitation of Metaxy's own.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import mxd_cli as mx
from mxd_cli import api
from tests.interop import mxd_project
from tests.interop.cases import Case, Step, samples_json
from tests.interop.hand_made import SID, Root, Story, sid_rows, spec
from tests.interop.metaxy_process import MetaxyProcess
from tests.interop.tables import HASHES, StoreFiles, rows_by_id
from tests.populated import digest

STORES = ("prod", "branch", "ref")
NOTHING = {"new": 0, "stale": 0, "orphaned": 0}
HELD = {"br/video", "br/clean", "br/joined"}
SERVED = {"br/labels", "br/thumbs"}


def clean(audio_code: str) -> mx.FeatureSpec:
    return spec(
        "br/clean",
        deps=[mx.FeatureDep(feature="br/video")],
        fields=[
            mx.FieldSpec(
                key="frames",
                code_version="1",
                deps=[mx.FieldDep(feature="br/video", fields=["frames"])],
            ),
            mx.FieldSpec(
                key="audio",
                code_version=audio_code,
                deps=[mx.FieldDep(feature="br/video", fields=["audio"])],
            ),
        ],
    )


def branch_case() -> tuple[Case, int]:
    """The case's steps, and how many of them build prod (the rest run on the branch)."""
    video = Root(
        (SID,),
        ("frames", "audio"),
        {"path": "/v/{sample_uid}"},
        sid_rows({f"s{i}": {"frames": f"f{i}", "audio": f"a{i}"} for i in range(1, 7)}),
    )
    labels = Root(
        (SID,),
        ("label",),
        {"tag": "t-{sample_uid}"},
        sid_rows({f"s{i}": {"label": f"l{i}"} for i in range(1, 7)}),
    )
    specs = [
        spec("br/video", fields=["frames", "audio"]),
        spec("br/labels", fields=["label"]),
        clean("1"),
        spec(
            "br/thumbs",
            deps=[mx.FeatureDep(feature="br/clean", select=["path"])],
            fields=[
                mx.FieldSpec(
                    key="frames", deps=[mx.FieldDep(feature="br/clean", fields=["frames"])]
                )
            ],
        ),
        spec(
            "br/joined",
            deps=[mx.FeatureDep(feature="br/clean"), mx.FeatureDep(feature="br/labels")],
            fields=[
                mx.FieldSpec(key="audio", deps=[mx.FieldDep(feature="br/clean", fields=["audio"])]),
                mx.FieldSpec(
                    key="label", deps=[mx.FieldDep(feature="br/labels", fields=["label"])]
                ),
            ],
        ),
    ]
    story = Story(specs, {"br/video": video, "br/labels": labels}).step("prod: first run")
    del video.rows[("s6",)]
    story.step("prod: s6 removed from br/video")
    story.replace_spec(clean("2"))
    story.step("prod: br/clean's audio code version 1 -> 2")
    video.rows[("s1",)] = {"frames": "f1", "audio": "a1-edited"}
    video.rows[("s2",)] = {"frames": "f2", "audio": "a2-edited"}
    story.step("branch: s1's and s2's audio edited")
    story.replace_spec(clean("1"))
    story.step("branch: br/clean's audio code version back to 1")
    return story.case("branch_stores", "md5"), 3


class BranchRun:
    """The project, its stores and the Metaxy driver of one test."""

    def __init__(self, case: Case, backend: str, folder: Path, metaxy: MetaxyProcess) -> None:
        self.case, self.backend, self.folder, self.metaxy = case, backend, folder, metaxy
        self.files = mxd_project.store_files(folder, backend, STORES)
        folder.mkdir(parents=True, exist_ok=True)
        # `ref` is only Metaxy's; mxd's config lists it too (harmless, never opened).
        mxd_project.write_config(folder, case, self.files, {"branch": ["prod"]})
        if backend == "duckdb":  # created by Metaxy's duckdb 1.4 (see differential.py)
            for name in ("prod", "branch"):
                metaxy.call("init", graph=case.graph(case.steps[0]), store=self.store(name))

    def store(self, name: str, *, fallback: bool = False) -> dict[str, Any]:
        described: dict[str, Any] = {
            "backend": self.backend,
            "path": str(self.files[name].path),
            "algorithm": self.case.algorithm,
        }
        if fallback:
            described["fallbacks"] = [self.store("prod")]
        return described

    def enter(self, step: Step) -> api.Project:
        mxd_project.write_step(self.folder, self.case, step)
        return mxd_project.load(self.folder)

    def copy_prod_to_ref(self) -> None:
        source, target = self.files["prod"].path, self.files["ref"].path
        if self.backend == "duckdb":
            shutil.copyfile(source, target)
            if source.with_name(source.name + ".wal").exists():
                shutil.copyfile(
                    source.with_name(source.name + ".wal"), target.with_name(target.name + ".wal")
                )
        else:
            shutil.copytree(source, target)

    def metaxy_check(self, step: Step, name: str, *, fallback: bool = False) -> dict[str, Any]:
        """Per feature, the counts Metaxy's ``resolve_update`` finds (its Polars engine)."""
        seen: dict[str, Any] = self.metaxy.call(
            "check",
            graph=self.case.graph(step),
            store=self.store(name, fallback=fallback),
            samples=samples_json(step.samples),
            engine="polars",
        )["features"]
        return seen

    def metaxy_rows(self, step: Step, name: str, *, fallback: bool = False) -> dict[str, Any]:
        seen = self.metaxy.call(
            "read",
            graph=self.case.graph(step),
            store=self.store(name, fallback=fallback),
            fallback=fallback,
        )["features"]
        ids = step.id_columns()
        return {k: None if rows is None else rows_by_id(rows, ids[k]) for k, rows in seen.items()}

    def mxd_rows(self, project: api.Project, step: Step) -> dict[str, Any]:
        out = {}
        for key, ids in step.id_columns().items():
            frame = api.read(project, key, columns=[*ids, *HASHES], store="branch")
            out[key] = rows_by_id(frame.to_dicts(), ids) if frame.height else None
        return out


def version_rows(files: StoreFiles, step: Step) -> dict[str, int]:
    """Per feature, the distinct (ids, feature version) pairs of its table: the rows an
    adoption takes (the latest of each, tombstones included)."""
    ids = step.id_columns()
    tables = files.tables(list(ids))
    return {
        key: frame.select([*ids[key], "metaxy_feature_version"]).unique().height
        for key, frame in tables.items()
        if frame is not None
    }


def by_feature(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in report["features"]}


@pytest.mark.parametrize("backend", ["delta", "duckdb"])
def test_metaxy_agrees_with_a_branch_store_mxd_ran(
    backend: str, metaxy: MetaxyProcess, tmp_path: Path
) -> None:
    case, built = branch_case()
    run = BranchRun(case, backend, tmp_path, metaxy)
    for step in case.steps[:built]:
        report = mxd_project.materialize(run.enter(step), "prod")
        assert report["status"] == "success", report
    prod_step = case.steps[built - 1]
    assert run.metaxy_check(prod_step, "prod") == dict.fromkeys(by_feature(report), NOTHING)
    run.copy_prod_to_ref()
    prod_digest = _digest(run.files["prod"])

    held: set[str] = set()
    for step in case.steps[built:]:
        label = step.label
        project = run.enter(step)
        # Before the run: what adoption must copy, from prod's own files.
        expected_adopted = version_rows(run.files["prod"], step)
        pending = run.metaxy.submit(
            "step",
            graph=case.graph(step),
            store=run.store("ref"),
            samples=samples_json(step.samples),
        )
        done = by_feature(mxd_project.materialize(project, "branch"))
        reference = pending.result()["features"]
        for key, theirs in reference.items():
            mine = done[key]
            assert {k: len(v) for k, v in theirs.items()} == {
                k: mine[k] for k in ("new", "stale", "orphaned")
            }, f"{label}: {key}: Metaxy on a copy of prod vs mxd on the branch ({mine})"
            # ... and it did just that once the feature was adopted (no expansion here).
            assert (mine["written"], mine["deleted"]) == (
                mine["new"] + mine["stale"],
                mine["orphaned"],
            ), f"{label}: {key}: what mxd wrote vs its increment ({mine})"
            changed = any(theirs.values())
            if key in held:
                assert (mine["adopted"], mine["source"]) == (0, None), (label, mine)
            elif changed:
                assert (mine["adopted"], mine["source"]) == (expected_adopted[key], "prod"), (
                    f"{label}: {key} adopted {mine['adopted']} rows, prod holds "
                    f"{expected_adopted[key]} (sample, feature version) pairs"
                )
                held.add(key)
            else:
                assert (mine["status"], mine["adopted"], mine["source"]) == (
                    "up_to_date",
                    0,
                    "prod",
                ), (label, mine)
        assert (held, set(reference) - held) == (HELD, SERVED), label

        # Metaxy on the branch, prod as its fallback.
        seen = run.metaxy_check(step, "branch", fallback=True)
        metaxy_ref = run.metaxy_rows(step, "ref")
        samples = {k: len(rows or ()) for k, rows in metaxy_ref.items()}
        for key, counts in seen.items():
            if key in held:
                assert counts == NOTHING, f"{label}: Metaxy finds work in {key} on the branch"
            else:
                # The documented divergence: Metaxy measures a feature against its own
                # rows only (allow_fallback=False), so a served one is all new to it.
                assert counts == {**NOTHING, "new": samples[key]}, (label, key, counts)

        status = by_feature(mxd_project.status(project, "branch"))
        for key, feature in status.items():
            source = "branch" if key in held else "prod"
            assert (feature["status"], feature["source"]) == ("up_to_date", source), (
                label,
                feature,
            )
            assert {k: feature[k] for k in NOTHING} == NOTHING, (label, feature)

        metaxy_branch = run.metaxy_rows(step, "branch", fallback=True)
        mxd_branch = run.mxd_rows(project, step)
        for key in metaxy_ref:
            assert metaxy_branch[key] == mxd_branch[key], (
                f"{label}: {key}: Metaxy vs mxd reading the branch"
            )
            assert metaxy_branch[key] == metaxy_ref[key], (
                f"{label}: {key}: the branch vs a copy of prod"
            )

    # Prod: untouched, and neither tool has anything to do there.
    assert _digest(run.files["prod"]) == prod_digest
    project = run.enter(prod_step)
    assert run.metaxy_check(prod_step, "prod") == dict.fromkeys(reference, NOTHING)
    for feature in mxd_project.status(project, "prod")["features"]:
        assert (feature["status"], feature["source"]) == ("up_to_date", "prod"), feature


def _digest(files: StoreFiles) -> dict[str, str]:
    """Every file of the store (a DuckDB file and its write-ahead log, or a Delta folder)."""
    if files.path.is_dir():
        return digest(files.path)
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(files.path.parent.glob(files.path.name + "*"))
    }
