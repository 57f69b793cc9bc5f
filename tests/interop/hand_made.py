"""Hand-made cases: what random graphs do not reach.

Multi-part field keys, renamed and selected columns, filters on optional joins, every
fields mapping, two id columns, aggregation (N:1, with and without ``on``), expansion
(1:N), early cut-off through data versions set by the asset, and a code change reverted.
Each case is a short story of steps; every step is run by both tools with the stores
handed over (see ``differential.py``).

Not here, and why:
- an aggregation whose dep ``select`` drops the upstream id columns: Metaxy orders each
  group by physical row order then, so its own results vary between runs (issue 12,
  item 6); mxd orders by the upstream ids and cannot match a moving target;
- three or more deps on one feature: Metaxy 0.1.11 fails on them (``DuplicateError`` on
  ``metaxy_deleted_at_right``);
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mxd_cli as mx
from tests.interop.cases import (
    DATA_VERSION_BY_FIELD,
    PROVENANCE_BY_FIELD,
    Case,
    Deletion,
    Expansion,
    SampleTable,
    Step,
)

SID = "sample_uid"
Rows = dict[tuple[str, ...], dict[str, str]]  # ids -> field -> provenance


@dataclass
class Root:
    """A root's samples as a story goes: ids -> provenance per field (and data versions)."""

    ids: tuple[str, ...]
    fields: tuple[str, ...]  # struct keys: field `audio/en` is `audio_en`
    user: Mapping[str, str]  # column -> template over the id columns
    rows: Rows = field(default_factory=dict)
    data_versions: Rows | None = None

    def table(self) -> SampleTable:
        structs = {PROVENANCE_BY_FIELD: self.fields}
        if self.data_versions is not None:
            structs[DATA_VERSION_BY_FIELD] = self.fields
        out = []
        for sample, by_field in sorted(self.rows.items()):
            row: dict[str, Any] = dict(zip(self.ids, sample, strict=True))
            for column, template in self.user.items():
                row[column] = template.format(**row)
            row[PROVENANCE_BY_FIELD] = dict(by_field)
            if self.data_versions is not None:
                row[DATA_VERSION_BY_FIELD] = dict(self.data_versions[sample])
            out.append(row)
        return SampleTable((*self.ids, *self.user), structs, tuple(out))


class Story:
    """Steps built one after another from a mutable state."""

    def __init__(self, specs: Sequence[mx.FeatureSpec], roots: Mapping[str, Root]) -> None:
        self.specs = list(specs)
        self.roots = dict(roots)
        self.steps: list[Step] = []

    def step(self, label: str, *deletions: Deletion) -> Story:
        tables = {key: root.table() for key, root in self.roots.items()}
        self.steps.append(Step(label, tuple(self.specs), tables, tuple(deletions)))
        return self

    def replace_spec(self, spec: mx.FeatureSpec) -> None:
        self.specs = [spec if s.key == spec.key else s for s in self.specs]

    def case(
        self,
        name: str,
        algorithm: str = "xxhash32",
        length: int = 8,
        expansions: Mapping[str, Expansion] | None = None,
    ) -> Case:
        return Case(name, algorithm, length, tuple(self.steps), dict(expansions or {}))


def spec(
    key: str,
    *,
    ids: Sequence[str] = (SID,),
    deps: Sequence[mx.FeatureDep] = (),
    fields: Sequence[mx.FieldSpec | str] = (),
) -> mx.FeatureSpec:
    return mx.FeatureSpec(key=key, id_columns=list(ids), deps=list(deps), fields=list(fields))


def sid_rows(values: Mapping[str, Mapping[str, str]]) -> Rows:
    return {(s,): dict(v) for s, v in values.items()}


# -- the cases ----------------------------------------------------------------------------


def multipart_chain(algorithm: str = "xxhash32", length: int = 8) -> Case:
    raw = Root(
        (SID,),
        ("audio_en", "audio_fr", "frames"),
        {"path": "/data/{sample_uid}.mp4"},
        sid_rows(
            {
                f"s{i}": {"audio_en": f"en{i}", "audio_fr": f"fr{i}", "frames": f"f{i}"}
                for i in range(1, 5)
            }
        ),
    )
    clean = spec(
        "mp/clean",
        deps=[mx.FeatureDep(feature="mp/raw", select=["path"])],
        fields=[
            mx.FieldSpec(key="audio/en", code_version="1"),
            mx.FieldSpec(
                key="mix",
                code_version="1",
                deps=[mx.FieldDep(feature="mp/raw", fields=["audio/fr", "audio/en"])],
            ),
            mx.FieldSpec(key="summary", code_version="2", deps=mx.ALL),
        ],
    )
    specs = [spec("mp/raw", fields=["audio/en", "audio/fr", "frames"]), clean]
    story = Story(specs, {"mp/raw": raw}).step("first run")
    raw.rows[("s1",)] = {**raw.rows[("s1",)], "audio_fr": "fr1-v2"}
    story.step("s1's French audio changed (mix and summary, not audio/en)")
    raw.rows[("s5",)] = {"audio_en": "en5", "audio_fr": "fr5", "frames": "f5"}
    del raw.rows[("s2",)]
    story.step("s5 added, s2 removed")
    story.replace_spec(
        spec(
            "mp/clean",
            deps=clean.deps,
            fields=[
                clean.fields[0],
                mx.FieldSpec(key="mix", code_version="2", deps=clean.fields[1].deps),
                clean.fields[2],
            ],
        )
    )
    story.step("mix's code version 1 -> 2: a new feature version, every sample new")
    return story.case(f"multipart_chain-{algorithm}-t{length}", algorithm, length)


def diamond(algorithm: str = "xxhash32", length: int = 8) -> Case:
    frames = Root(
        (SID,),
        ("frames", "meta"),
        {"path": "/v/{sample_uid}"},
        sid_rows({f"s{i}": {"frames": f"f{i}", "meta": f"m{i}"} for i in range(1, 6)}),
    )
    audio = Root(
        (SID,),
        ("audio",),
        {"path": "/a/{sample_uid}"},
        sid_rows({f"s{i}": {"audio": f"a{i}"} for i in range(1, 5)}),
    )
    joined = spec(
        "v/joined",
        deps=[
            mx.FeatureDep(feature="v/frames"),
            mx.FeatureDep(feature="v/audio", rename={"path": "audio_path"}, select=["audio_path"]),
        ],
        fields=[
            mx.FieldSpec(key="frames", code_version="1"),
            mx.FieldSpec(
                key="audio",
                code_version="2",
                deps=[mx.FieldDep(feature="v/audio", fields=["audio"])],
            ),
            mx.FieldSpec(key="sync", code_version="1", deps=mx.ALL),
        ],
    )
    summary = spec(
        "v/summary",
        deps=[mx.FeatureDep(feature="v/joined", filters=["audio_path != '/a/s3'"])],
    )
    specs = [
        spec("v/frames", fields=["frames", "meta"]),
        spec("v/audio", fields=["audio"]),
        joined,
        summary,
    ]
    story = Story(specs, {"v/frames": frames, "v/audio": audio}).step("first run")
    audio.rows[("s2",)] = {"audio": "a2-v2"}
    story.step("s2's audio changed")
    story.step("s1 soft-deleted from v/joined", Deletion("v/joined", SID, ("s1",)))
    del frames.rows[("s4",)]
    frames.rows[("s3",)] = {"frames": "f3", "meta": "m3-v2"}
    story.step("s4 removed from v/frames; s3's meta changed (frames unchanged)")
    return story.case(f"diamond-{algorithm}-t{length}", algorithm, length)


def optional_joins() -> Case:
    base = Root(
        (SID,),
        ("x",),
        {"b": "b-{sample_uid}"},
        sid_rows({f"s{i}": {"x": f"x{i}"} for i in range(1, 5)}),
    )
    extra = Root(
        (SID,), ("y",), {"e": "e-{sample_uid}"}, sid_rows({"s2": {"y": "y2"}, "s9": {"y": "y9"}})
    )
    specs = [
        spec("o/base", fields=["x"]),
        spec("o/extra", fields=["y"]),
        spec(
            "o/combined",
            deps=[mx.FeatureDep(feature="o/base"), mx.FeatureDep(feature="o/extra", optional=True)],
            fields=[
                mx.FieldSpec(key="x", deps=[mx.FieldDep(feature="o/base", fields=["x"])]),
                mx.FieldSpec(key="xy", deps=mx.ALL),
            ],
        ),
        spec(
            "o/any",
            deps=[
                mx.FeatureDep(feature="o/base", optional=True),
                mx.FeatureDep(feature="o/extra", optional=True),
            ],
            fields=[mx.FieldSpec(key="xy", deps=mx.ALL)],
        ),
        spec(
            "o/only_missing",
            deps=[mx.FeatureDep(feature="o/combined", filters=["e IS NULL"])],
        ),
    ]
    story = Story(specs, {"o/base": base, "o/extra": extra}).step("first run")
    extra.rows[("s3",)] = {"y": "y3"}
    story.step("s3 gains an optional upstream row")
    del base.rows[("s1",)]
    story.step("s1 removed from the required upstream")
    extra.rows.clear()
    story.step("every optional upstream row removed")
    return story.case("optional_joins")


def fields_mappings() -> Case:
    up = Root(
        (SID,),
        ("a", "b_x", "c"),
        {"u": "u{sample_uid}"},
        sid_rows({f"s{i}": {"a": f"a{i}", "b_x": f"b{i}", "c": f"c{i}"} for i in range(1, 4)}),
    )
    fm = mx.FieldsMapping
    specs = [
        spec("m/up", fields=["a", "b/x", "c"]),
        spec("m/all", deps=[mx.FeatureDep(feature="m/up", fields_mapping=fm.all())], fields=["a"]),
        spec(
            "m/none",
            deps=[mx.FeatureDep(feature="m/up", fields_mapping=fm.none())],
            fields=[
                mx.FieldSpec(key="a", deps=[mx.FieldDep(feature="m/up", fields=["a", "c"])]),
                mx.FieldSpec(key="c", deps=[mx.FieldDep(feature="m/up", fields=["c"])]),
            ],
        ),
        spec(
            "m/specific",
            deps=[
                mx.FeatureDep(
                    feature="m/up", fields_mapping=fm.specific({"mix": ["c", "b/x"], "a": ["a"]})
                )
            ],
            fields=["mix", "a"],
        ),
        spec(
            "m/suffix",
            deps=[
                mx.FeatureDep(
                    feature="m/up",
                    fields_mapping=fm.default(match_suffix=True, exclude_fields=["a"]),
                )
            ],
            fields=["x", "other"],
        ),
    ]
    story = Story(specs, {"m/up": up}).step("first run")
    up.rows[("s1",)] = {**up.rows[("s1",)], "c": "c1-v2"}
    story.step("s1's c changed")
    up.rows[("s2",)] = {**up.rows[("s2",)], "a": "a2-v2"}
    story.step("s2's a changed")
    return story.case("fields_mappings", "md5")


def two_id_columns() -> Case:
    ids = ("user_id", "day")
    root = Root(
        ids,
        ("clicks",),
        {"label": "{user_id}@{day}"},
        {(u, d): {"clicks": f"{u}{d}"} for u in ("u1", "u2", "u3") for d in ("d1", "d2")},
    )
    specs = [
        spec("t/events", ids=ids, fields=["clicks"]),
        spec(
            "t/daily",
            ids=ids,
            deps=[mx.FeatureDep(feature="t/events", filters=["label NOT IN ('u3@d2')"])],
            fields=["clicks"],
        ),
    ]
    story = Story(specs, {"t/events": root}).step("first run")
    root.rows[("u1", "d2")] = {"clicks": "changed"}
    story.step("(u1, d2) changed")
    story.step("user u2 soft-deleted downstream", Deletion("t/daily", "user_id", ("u2",)))
    del root.rows[("u3", "d1")]
    story.step("(u3, d1) removed")
    return story.case("two_id_columns", "xxhash64")


def aggregation(on_given: bool = True) -> Case:
    chunks = Root(
        ("video_id", "chunk_id"),
        ("emb",),
        {"note": "{video_id}:{chunk_id}"},
        {(v, c): {"emb": f"e-{v}{c}"} for v in ("v1", "v2", "v3") for c in ("c1", "c2")},
    )
    lineage = mx.aggregation(on=["video_id"]) if on_given else mx.aggregation()
    specs = [
        spec("lin/chunks", ids=("video_id", "chunk_id"), fields=["emb"]),
        spec(
            "lin/video",
            ids=("video_id",),
            deps=[mx.FeatureDep(feature="lin/chunks", lineage=lineage)],
            fields=["emb"],
        ),
        spec("lin/summary", ids=("video_id",), deps=[mx.FeatureDep(feature="lin/video")]),
    ]
    story = Story(specs, {"lin/chunks": chunks}).step("first run")
    chunks.rows[("v1", "c2")] = {"emb": "changed"}
    story.step("one chunk of v1 changed")
    chunks.rows[("v1", "c3")] = {"emb": "e-v1c3"}
    story.step("a chunk added to v1")
    del chunks.rows[("v2", "c1")], chunks.rows[("v2", "c2")]
    story.step("every chunk of v2 removed")
    story.replace_spec(
        spec(
            "lin/video",
            ids=("video_id",),
            deps=[mx.FeatureDep(feature="lin/chunks", lineage=lineage)],
            fields=[mx.FieldSpec(key="emb", code_version="2")],
        )
    )
    story.step("lin/video's code version changed")
    name = "aggregation" if on_given else "aggregation_without_on"
    return story.case(name, "xxh3_64")


def expansion() -> Case:
    video = Root(
        ("video_id",),
        ("frames",),
        {"src": "{video_id}.mp4"},
        {(v,): {"frames": f"f-{v}"} for v in ("v1", "v2", "v3")},
    )
    specs = [
        spec("ex/video", ids=("video_id",), fields=["frames"]),
        spec(
            "ex/frames",
            ids=("video_id", "frame_id"),
            deps=[mx.FeatureDep(feature="ex/video", lineage=mx.expansion(on=["video_id"]))],
            fields=["frames"],
        ),
    ]
    children = Expansion(
        "video_id",
        "frame_id",
        {"v1": ("0", "1", "2"), "v2": ("0",), "v3": ("0", "1"), "v4": ("0", "1")},
    )
    story = Story(specs, {"ex/video": video}).step("first run")
    video.rows[("v2",)] = {"frames": "f-v2-b"}
    story.step("v2 changed")
    del video.rows[("v3",)]
    video.rows[("v4",)] = {"frames": "f-v4"}
    story.step("v3 removed, v4 added")
    return story.case("expansion", "xxhash32", expansions={"ex/frames": children})


def early_cutoff() -> Case:
    raw = Root(
        (SID,),
        ("audio", "frames"),
        {},
        sid_rows({f"s{i}": {"audio": f"pa{i}", "frames": f"pf{i}"} for i in range(1, 4)}),
        data_versions=sid_rows(
            {f"s{i}": {"audio": f"da{i}", "frames": f"df{i}"} for i in range(1, 4)}
        ),
    )
    specs = [
        spec("dv/raw", fields=["audio", "frames"]),
        spec("dv/clean", deps=[mx.FeatureDep(feature="dv/raw")], fields=["audio", "frames"]),
    ]
    story = Story(specs, {"dv/raw": raw}).step("first run")
    raw.rows[("s1",)] = {"audio": "pa1-v2", "frames": "pf1"}
    story.step("s1's provenance changed, its data version not: dv/clean is cut off")
    assert raw.data_versions is not None
    raw.data_versions[("s2",)] = {"audio": "da2-v2", "frames": "df2"}
    story.step("s2's data version changed")
    return story.case("early_cutoff")


def code_change_reverted() -> Case:
    raw = Root((SID,), ("v",), {}, sid_rows({f"s{i}": {"v": f"v{i}"} for i in range(1, 4)}))

    def clean(version: str) -> mx.FeatureSpec:
        return spec(
            "cv/clean",
            deps=[mx.FeatureDep(feature="cv/raw")],
            fields=[mx.FieldSpec(key="v", code_version=version)],
        )

    story = Story([spec("cv/raw", fields=["v"]), clean("1")], {"cv/raw": raw})
    story.step("first run")
    story.replace_spec(clean("2"))
    story.step("code version 1 -> 2")
    raw.rows[("s1",)] = {"v": "v1-b"}
    story.replace_spec(clean("1"))
    story.step("back to 1 (its rows are current again), s1 changed meanwhile")
    return story.case("code_change_reverted", "sha256", 12)


HAND_MADE: dict[str, Callable[[], Case]] = {
    "multipart_chain": multipart_chain,
    "diamond": diamond,
    "optional_joins": optional_joins,
    "fields_mappings": fields_mappings,
    "two_id_columns": two_id_columns,
    "aggregation": aggregation,
    "aggregation_without_on": lambda: aggregation(on_given=False),
    "expansion": expansion,
    "early_cutoff": early_cutoff,
    "code_change_reverted": code_change_reverted,
}
