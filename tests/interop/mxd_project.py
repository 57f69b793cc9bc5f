"""mxd's side of a case: a real project folder, run through ``mxd_cli.api`` in-process.

The folder holds ``metaxy.toml`` (by default two stores, ``a`` and ``b``, the ones the
tools hand back and forth), ``graph.json`` (the step's Metaxy spec dumps), ``samples.json``
and ``expansions.json``, and an entrypoint module that declares the features from the dumps
(through :func:`mxd_cli.definitions.metaxy_specs.spec_from_metaxy`, the reader of
Metaxy's serialized specs) and one asset each. The assets do what the Metaxy driver's do:
roots return the samples; 1:1 features write their increment rows as given; an
aggregation keeps one row per sample; an expansion makes the listed children.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

import mxd_cli as mx
from mxd_cli import api
from mxd_cli.definitions.metaxy_specs import spec_from_metaxy
from mxd_cli.engine.results import RunOptions
from tests.interop.cases import Case, SampleTable, Step, samples_json
from tests.interop.tables import StoreFiles

MODULE = "interop_pipeline"
PIPELINE = """\
from tests.interop.mxd_project import declare

declare(__file__)
"""


def store_files(
    folder: Path, backend: str, names: Sequence[str] = ("a", "b")
) -> dict[str, StoreFiles]:
    suffix = ".duckdb" if backend == "duckdb" else "_delta"
    return {name: StoreFiles(backend, folder / f"store_{name}{suffix}") for name in names}


def write_config(
    folder: Path,
    case: Case,
    stores: Mapping[str, StoreFiles],
    fallbacks: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """``fallbacks``: a store's ``fallback_stores`` (by name), for the stores that have any."""
    blocks = [
        f'project = "{case.project}"',
        f'entrypoints = ["{MODULE}"]',
        f"hash_truncation_length = {case.length}",
        f'store = "{next(iter(stores))}"',
    ]
    for name, files in stores.items():
        option = "database" if files.backend == "duckdb" else "root_path"
        block = textwrap.dedent(
            f"""\
            [stores.{name}]
            type = "{files.backend}"
            [stores.{name}.config]
            {option} = "{files.path}"
            hash_algorithm = "{case.algorithm}"
            """
        )
        if fallbacks and fallbacks.get(name):
            block += f"fallback_stores = {json.dumps(list(fallbacks[name]))}\n"
        blocks.append(block)
    (folder / "metaxy.toml").write_text("\n".join(blocks) + "\n")
    (folder / f"{MODULE}.py").write_text(PIPELINE)
    expansions = {k: e.to_json() for k, e in case.expansions.items()}
    (folder / "expansions.json").write_text(json.dumps(expansions))


def write_step(folder: Path, case: Case, step: Step) -> None:
    (folder / "graph.json").write_text(json.dumps(step.dumps()))
    (folder / "samples.json").write_text(json.dumps(samples_json(step.samples)))


def load(folder: Path) -> api.Project:
    return api.Project.load(folder / "metaxy.toml")


def materialize(project: api.Project, store: str, *, dry_run: bool = False) -> dict[str, Any]:
    # Metaxy has no mass-delete guard: an edit that empties a root is meant here.
    options = RunOptions(dry_run=dry_run, allow_mass_delete=True)
    result = api.materialize(project, options, store=store)
    report: dict[str, Any] = result.to_json()
    return report


def status(project: api.Project, store: str) -> dict[str, Any]:
    return api.status(project, store=store)


def soft_delete(project: api.Project, store: str, feature: str, sql: str) -> None:
    api.delete(project, [feature], filters=[sql], store=store)


# -- what the entrypoint module runs ---------------------------------------------------------


def declare(module_file: str) -> None:
    """Declare the features of ``graph.json`` beside ``module_file``, with their assets."""
    folder = Path(module_file).resolve().parent
    dumps = json.loads((folder / "graph.json").read_text())
    expansions = json.loads((folder / "expansions.json").read_text())
    for dump in dumps:
        spec = spec_from_metaxy(dump)
        name = "F_" + spec.key.table_name
        type(name, (mx.BaseFeature,), {"__module__": MODULE}, spec=spec)
        key = str(spec.key)
        if not spec.deps:
            mx.asset(key)(_root_asset(folder, key))
        else:
            mx.asset(key)(_downstream_asset(spec, expansions.get(key)))


def _root_asset(folder: Path, key: str) -> Any:
    def root(ctx: mx.AssetContext) -> pl.DataFrame:
        tables = json.loads((folder / "samples.json").read_text())
        return SampleTable.from_json(tables[key]).to_polars()

    return root


def _downstream_asset(spec: mx.FeatureSpec, expansion: Mapping[str, Any] | None) -> Any:
    ids = list(spec.id_columns)
    kinds = {dep.lineage.kind for dep in spec.deps}

    def downstream(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
        if "N:1" in kinds:
            keep = [c for c in rows.columns if c in ids or c.startswith("metaxy_")]
            return rows.select(keep).unique(subset=ids, keep="first", maintain_order=True)
        if "1:N" in kinds and expansion is not None:
            parent, child = expansion["on"], expansion["column"]
            children = pl.DataFrame(
                [{parent: k, child: v} for k, vs in expansion["children"].items() for v in vs],
                schema={parent: pl.String, child: pl.String},
            )
            return rows.join(children, on=parent, how="inner")
        return rows

    return downstream
