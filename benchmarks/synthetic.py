"""The synthetic project the benchmark runs mxd on, and the edits between its phases.

Graph (field-level deps in brackets)::

    bench/clips    [frames, audio]  ─┐
                                     ├─> bench/embeddings [embedding <- frames, caption;
    bench/captions [caption, label] ─┘                     quality   <- audio, label]
                                              └─> bench/scores [score <- embedding]

Both roots hold N samples with string ids and are read from Parquet files in ``data/``
(``source_version``: the file's size and mtime). ``bench/embeddings`` inner-joins them,
reads ``caption`` renamed to ``text`` and selects two of the clips' three columns. Assets
are identity-like (a column passed through), so mxd's own cost dominates.

The ids are laid out so that each kind of root edit reaches the downstream features: the
clips hold N ids of which 0.1% (``held``) are not captioned yet, plus 0.1% captioned ids
the clips lack; the edit adds those, removes 0.1% of the joined ones and changes 1%
(half of them in ``frames``, which reaches ``bench/scores``; half in ``audio``, which
field-level deps stop at ``bench/embeddings``).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import polars_hash  # noqa: F401  (registers .nchash)

CLIPS, CAPTIONS, EMBEDDINGS, SCORES = (
    "bench/clips",
    "bench/captions",
    "bench/embeddings",
    "bench/scores",
)
FEATURES = (CLIPS, CAPTIONS, EMBEDDINGS, SCORES)
ROOT_FILES = {CLIPS: "clips.parquet", CAPTIONS: "captions.parquet"}
ID = "sample_id"
SHARDS = 100  # clips.shard = index % 100
DELETE_SHARD = 7
DELETE_FILTER = f"shard = {DELETE_SHARD}"  # 1% of the clips
HASH_TRUNCATION = 64

PIPELINE = '''\
"""Synthetic benchmark graph (written by benchmarks/synthetic.py)."""

import os

import polars as pl

import mxd_cli as mx


def _token(name):
    def version(ctx):
        stat = os.stat(ctx.project_dir / "data" / name)
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    return version


class Clips(mx.BaseFeature, spec=mx.FeatureSpec(
    key="bench/clips", id_columns=["sample_id"],
    fields=[mx.FieldSpec(key="frames", code_version="1"),
            mx.FieldSpec(key="audio", code_version="1")])):
    pass


class Captions(mx.BaseFeature, spec=mx.FeatureSpec(
    key="bench/captions", id_columns=["sample_id"],
    fields=[mx.FieldSpec(key="caption", code_version="1"),
            mx.FieldSpec(key="label", code_version="1")])):
    pass


class Embeddings(mx.BaseFeature, spec=mx.FeatureSpec(
    key="bench/embeddings", id_columns=["sample_id"],
    deps=[mx.FeatureDep(feature=Clips, select=["frames", "audio"]),
          mx.FeatureDep(feature=Captions, rename={"caption": "text"})],
    fields=[
        mx.FieldSpec(key="embedding", code_version="1", deps=[
            mx.FieldDep(feature=Clips, fields=["frames"]),
            mx.FieldDep(feature=Captions, fields=["caption"])]),
        mx.FieldSpec(key="quality", code_version="1", deps=[
            mx.FieldDep(feature=Clips, fields=["audio"]),
            mx.FieldDep(feature=Captions, fields=["label"])]),
    ])):
    pass


class Scores(mx.BaseFeature, spec=mx.FeatureSpec(
    key="bench/scores", id_columns=["sample_id"],
    deps=[mx.FeatureDep(feature=Embeddings)],
    fields=[mx.FieldSpec(key="score", code_version="1", deps=[
        mx.FieldDep(feature=Embeddings, fields=["embedding"])])])):
    pass


@mx.asset(Clips, source_version=_token("clips.parquet"))
def clips(ctx):
    return pl.read_parquet(ctx.project_dir / "data" / "clips.parquet")


@mx.asset(Captions, source_version=_token("captions.parquet"))
def captions(ctx):
    return pl.read_parquet(ctx.project_dir / "data" / "captions.parquet")


@mx.asset(Embeddings)
def embeddings(ctx, rows):
    return rows.select("sample_id", embedding=pl.col("frames"), quality=pl.col("audio"))


@mx.asset(Scores)
def scores(ctx, rows):
    return rows.select("sample_id", score=pl.col("embedding"))
'''

CONFIG = """\
project = "bench"
entrypoints = ["pipeline"]
store = "dev"
hash_truncation_length = {truncation}

[stores.dev]
type = "{store}"

[stores.dev.config]
{location}

[ext.mxd]
chunk_size = {chunk_size}
"""

LOCATIONS = {
    "duckdb": 'database = ".mxd/{name}.duckdb"',
    "delta": 'root_path = ".mxd/{name}"',
    # A local session on the machine's two cores (the JVM's start is part of every phase).
    "spark": 'warehouse = ".mxd/{name}"\nmaster = "local[2]"',
}
PROBE_CONFIG = "write-probe.toml"  # the same project over a scratch store (write probe)


@dataclass(frozen=True)
class Layout:
    """How many ids of each kind a project of ``rows`` samples per root has."""

    rows: int

    @property
    def held(self) -> int:
        """Captioned ids the clips lack at first (added by the edit): 0.1%."""
        return max(1, self.rows // 1000)

    @property
    def changed(self) -> int:
        return max(2, self.rows // 100)

    @property
    def removed(self) -> int:
        return max(1, self.rows // 1000)


def _ids(start: int, stop: int) -> pl.Expr:
    # Random-looking, unique strings (a 64-bit hash of the index), not sorted by index.
    index = pl.int_range(start, stop, dtype=pl.Int64)
    return pl.lit("clip-") + index.cast(pl.String).nchash.xxhash64().cast(pl.String)


def _digest(prefix: str, column: str, version: str) -> pl.Expr:
    return (pl.lit(f"{prefix}:{version}:") + pl.col(column)).nchash.md5()  # 32 hex chars


def _clip_values(version_frames: pl.Expr, version_audio: pl.Expr) -> list[pl.Expr]:
    frames = pl.concat_str(
        [pl.lit("s3://bench-media/frames/"), pl.col(ID), pl.lit(".mp4#etag="), version_frames]
    )
    return [frames.alias("frames"), version_audio.alias("audio")]


def write_roots(data: Path, rows: int) -> Layout:
    """Write ``clips.parquet`` and ``captions.parquet`` for ``rows`` samples each."""
    layout = Layout(rows)
    data.mkdir(parents=True, exist_ok=True)
    # Captions: ids 0..rows-1. Clips: the same ids except the last `held`, which are
    # replaced by `held` ids (rows..rows+held-1) that have no caption.
    base = pl.select(_ids(0, rows).alias(ID), pl.int_range(0, rows).alias("index"))
    captions = base.select(
        ID,
        pl.concat_str([pl.lit("s3://bench-media/captions/"), pl.col(ID), pl.lit(".json")]).alias(
            "caption"
        ),
        _digest("label", ID, "0").alias("label"),
    )
    uncaptioned = pl.select(
        _ids(rows, rows + layout.held).alias(ID),
        pl.int_range(rows, rows + layout.held).alias("index"),
    )
    clips = pl.concat([base.head(rows - layout.held), uncaptioned])
    clips = clips.select(
        ID,
        *_clip_values(_digest("frames", ID, "0").str.slice(0, 16), _digest("audio", ID, "0")),
        (pl.col("index") % SHARDS).cast(pl.Int32).alias("shard"),
    )
    captions.write_parquet(data / ROOT_FILES[CAPTIONS])
    clips.write_parquet(data / ROOT_FILES[CLIPS])
    return layout


def edit_clips(data: Path, rows: int) -> dict[str, int]:
    """Change 1% of the clips, add the 0.1% held back, remove 0.1%; return the counts."""
    layout = Layout(rows)
    path = data / ROOT_FILES[CLIPS]
    clips = pl.read_parquet(path)
    joined = rows - layout.held  # the first `joined` rows are captioned clips
    removed = clips.slice(0, layout.removed)[ID]
    changed = clips.slice(layout.removed, layout.changed)[ID]
    half = changed.head(layout.changed // 2)
    frames_edit = pl.col(ID).is_in(half.implode())
    audio_edit = pl.col(ID).is_in(changed.implode()) & ~frames_edit
    clips = clips.filter(~pl.col(ID).is_in(removed.implode())).with_columns(
        pl.when(frames_edit)
        .then(pl.col("frames").str.replace(r"#etag=.*$", "#etag=edited"))
        .otherwise(pl.col("frames"))
        .alias("frames"),
        pl.when(audio_edit)
        .then(_digest("audio", ID, "1"))
        .otherwise(pl.col("audio"))
        .alias("audio"),
    )
    held = pl.select(
        _ids(joined, rows).alias(ID), pl.int_range(joined, rows).alias("index")
    ).select(
        ID,
        *_clip_values(_digest("frames", ID, "0").str.slice(0, 16), _digest("audio", ID, "0")),
        (pl.col("index") % SHARDS).cast(pl.Int32).alias("shard"),
    )
    pl.concat([clips, held]).write_parquet(path)
    return {"changed": changed.len(), "added": held.height, "removed": removed.len()}


def write_project(root: Path, *, store: str, chunk_size: int) -> Path:
    """metaxy.toml, pipeline.py and the write probe's config in ``root`` (data files go to
    ``root/data``); returns the path of metaxy.toml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.py").write_text(PIPELINE)
    for name, file in (("dev", "metaxy.toml"), ("probe", PROBE_CONFIG)):
        config = CONFIG.format(
            truncation=HASH_TRUNCATION,
            store=store,
            location=LOCATIONS[store].format(name=name if store == "duckdb" else f"{name}-{store}"),
            chunk_size=chunk_size,
        )
        (root / file).write_text(textwrap.dedent(config))
    return root / "metaxy.toml"


def main() -> None:
    """``python synthetic.py roots DATA N`` or ``python synthetic.py edit DATA N``: do it
    in a process of its own and print what was done as JSON."""
    import json
    import sys

    action, data, rows = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if action == "roots":
        layout = write_roots(data, rows)
        print(json.dumps({"rows": rows, "held": layout.held, "joined": rows - layout.held}))
    elif action == "edit":
        print(json.dumps(edit_clips(data, rows)))
    else:
        raise SystemExit(f"unknown action {action!r}: use roots or edit")


if __name__ == "__main__":
    main()
