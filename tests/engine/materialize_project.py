"""A small project for materialize tests, steered by files in its folder.

``data.csv`` holds the root samples (id, value, grp); ``other.csv`` an independent root.
``behaviour.json`` tells the ``clean`` asset how to misbehave: ``fail_on_call`` (raise on
the Nth call), ``sleep`` (seconds per call), ``output`` (a named kind of bad output).
Every asset call appends a line to ``calls.log``.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from tests.conftest import write_project

PIPELINE = """
import json, time
from pathlib import Path

def _log(ctx, what):
    with open(ctx.project_dir / "calls.log", "a") as fh:
        fh.write(f"{ctx.feature} {what}\\n")

def _behaviour(ctx):
    path = ctx.project_dir / "behaviour.json"
    return json.loads(path.read_text()) if path.exists() else {}

def _source(ctx):
    stat = (ctx.project_dir / "data.csv").stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"

class Raw(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/raw", id_columns=["id"],
        fields=[mx.FieldSpec(key="value", code_version="1"),
                mx.FieldSpec(key="grp", code_version="1")])):
    pass

class Other(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/other", id_columns=["id"],
        fields=[mx.FieldSpec(key="x", code_version="1")])):
    pass

class Clean(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/clean", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Raw)],
        fields=[mx.FieldSpec(key="value", code_version="1")])):
    pass

class Final(mx.BaseFeature, spec=mx.FeatureSpec(key="demo/final", id_columns=["id"],
        deps=[mx.FeatureDep(feature=Clean)],
        fields=[mx.FieldSpec(key="score", code_version="1")])):
    pass

@mx.asset(Raw, source_version=_source)
def raw(ctx):
    _log(ctx, "root")
    frame = pl.read_csv(ctx.project_dir / "data.csv", schema_overrides={"id": pl.String})
    if ctx.partition:
        (column, value), = ctx.partition.items()
        frame = frame.filter(pl.col(column).cast(pl.String) == value)
    return frame

@mx.asset(Other)
def other(ctx):
    _log(ctx, "root")
    return pl.read_csv(ctx.project_dir / "other.csv", schema_overrides={"id": pl.String})

@mx.asset(Clean, chunk_size=2)
def clean(ctx, rows):
    b = _behaviour(ctx)
    calls = len([l for l in (ctx.project_dir / "calls.log").read_text().splitlines()
                 if l.startswith("demo/clean")]) + 1
    _log(ctx, f"chunk {rows.height} {','.join(sorted(rows['id']))}")
    time.sleep(b.get("sleep", 0))
    if b.get("fail_on_call") == calls:
        raise RuntimeError(f"boom on call {calls}")
    out = rows.select("id", pl.col("value").str.to_uppercase().alias("value"))
    kind = b.get("output")
    if kind == "no_ids":
        out = out.drop("id")
    elif kind == "null_id":
        out = out.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None)
                               .otherwise(pl.col("id")).alias("id"))
    elif kind == "dupes":
        out = pl.concat([out, out.head(1)])
    elif kind == "foreign":
        out = pl.concat([out, pl.DataFrame({"id": ["zzz"], "value": ["X"]})])
    elif kind == "int_ids":
        out = out.with_columns(pl.lit(1).alias("id"))
    elif kind == "bad_provenance":
        out = rows.with_columns(pl.lit("forged").alias("metaxy_provenance"))
    elif kind == "pandas":
        return out.to_pandas()
    elif kind == "arrow":
        return out.to_arrow()
    elif kind == "generator":
        return (part for part in out.iter_slices(1))
    elif kind == "short":
        out = out.head(max(0, out.height - 1))
    elif kind == "empty":
        out = out.clear()
    elif kind == "case_dupe":
        out = out.with_columns(pl.col("value").alias("VALUE"))
    elif kind == "system_case":
        out = out.with_columns(pl.lit("x").alias("Metaxy_Provenance"))
    elif kind == "reserved":
        out = out.with_columns(pl.lit("x").alias("metaxy_extra"))
    elif kind == "mxd_column":
        out = out.with_columns(pl.lit("x").alias("__mxd_note"))
    elif kind == "empty_name":
        out = out.with_columns(pl.lit("x").alias(""))
    elif kind == "dict":
        return out.to_dict(as_series=False)
    elif kind == "cutoff":
        out = out.with_columns(pl.struct(value=pl.lit("same")).alias(
            "metaxy_data_version_by_field"))
    return out

@mx.asset(Final)
def final(ctx, rows):
    _log(ctx, f"chunk {rows.height}")
    return rows.select("id", score=pl.col("value").str.len_chars())
"""

ROWS = {
    "id": [f"s{i}" for i in range(1, 9)],
    "value": [f"v{i}" for i in range(1, 9)],
    "grp": ["a", "a", "b", "b", "a", "b", "a", "b"],
}


def make(root: Path, *, store: str = "duckdb") -> Path:
    config = None
    if store == "delta":
        config = """\
            project = "t"
            entrypoints = ["pipeline"]
            [stores.dev]
            type = "delta"
            [stores.dev.config]
            root_path = ".mxd/delta"
            """
    if store == "spark":
        config = """\
            project = "t"
            entrypoints = ["pipeline"]
            [stores.dev]
            type = "spark"
            [stores.dev.config]
            master = "local[2]"
            warehouse = ".mxd/spark"
            """
    write_project(root, PIPELINE, config=config)
    pl.DataFrame(ROWS).write_csv(root / "data.csv")
    pl.DataFrame({"id": ["o1", "o2"], "x": [1, 2]}).write_csv(root / "other.csv")
    (root / "calls.log").write_text("")
    return root


def behave(root: Path, **behaviour: object) -> None:
    (root / "behaviour.json").write_text(json.dumps(behaviour))


def edit(root: Path, ident: str, value: str) -> None:
    frame = pl.read_csv(root / "data.csv", schema_overrides={"id": pl.String})
    frame = frame.with_columns(
        pl.when(pl.col("id") == ident).then(pl.lit(value)).otherwise(pl.col("value")).alias("value")
    )
    frame.write_csv(root / "data.csv")


def calls(root: Path, feature: str) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in (root / "calls.log").read_text().splitlines()
        if line.startswith(feature + " ")
    ]
