"""Drive Metaxy 0.1.11 through its public API, one JSON request per line on stdin.

Runs with the Python of the ``metaxy`` environment (see ../environments.py), never in the
test process: it imports nothing of mxd or of the tests. Each request is one line
``{"id": N, "cmd": NAME, ...}``; each answer one line on stdout, ``{"id": N, "ok": true,
"result": ...}`` or ``{"id": N, "ok": false, "error": TRACEBACK}``. Anything else that
writes to stdout (a library printing) is sent to stderr, so answers stay parseable.

A request names the graph (Metaxy spec dumps, ``model_dump(mode="json")``, plus the
project and truncation length) and the store (``backend``, ``path``, ``algorithm``, and
optionally ``fallbacks``: stores described alike, Metaxy's ``fallback_stores``); stores are
opened for the request and closed before the answer, so the test process can open the same
files in between.

What a pipeline step does here is what the golden vectors assume a runner does: features
in topological order; roots get ``resolve_update(key, samples=...)``, others
``resolve_update(key)``; the "asset" writes ``new`` and ``stale`` as returned (an
aggregation keeps one row per sample, an expansion makes the children the request lists);
orphaned samples are soft-deleted.

DuckDB: ``DuckDBMetadataStore`` runs ``INSTALL hashfuncs FROM community`` on every open,
which needs a network this machine does not have. ``StandInDuckDBStore`` overrides only
that method and registers Python functions named and typed as the extension documents
(``xxh32(VARCHAR) -> UINTEGER``, ``xxh64`` and ``xxh3_64 -> UBIGINT``, seed 0, from the
``xxhash`` package); Metaxy's SQL calls them exactly as it would call the extension.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

PROTOCOL_OUT = sys.stdout
sys.stdout = sys.stderr  # library output must not reach the answers

warnings.simplefilter("ignore")  # Metaxy warns about auto-created tables, engine switches...

import metaxy as mx  # noqa: E402
import narwhals as nw  # noqa: E402
import polars as pl  # noqa: E402
import xxhash  # noqa: E402
from metaxy._hashing import HashAlgorithm  # noqa: E402
from metaxy.config import MetaxyConfig  # noqa: E402
from metaxy.ext.duckdb import DuckDBMetadataStore  # noqa: E402
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore  # noqa: E402
from metaxy.metadata_store.system.storage import SystemTableStorage  # noqa: E402
from metaxy.models.feature_definition import FeatureDefinition  # noqa: E402

SYSTEM = (
    "metaxy_provenance_by_field",
    "metaxy_provenance",
    "metaxy_data_version_by_field",
    "metaxy_data_version",
    "metaxy_feature_version",
)


class StandInDuckDBStore(DuckDBMetadataStore):
    """Metaxy's DuckDB store with the ``hashfuncs`` extension replaced by local functions."""

    def _load_extensions(self) -> None:
        con = self._duckdb_raw_connection()
        functions = (
            ("xxh32", xxhash.xxh32_intdigest, "UINTEGER"),
            ("xxh64", xxhash.xxh64_intdigest, "UBIGINT"),
            ("xxh3_64", xxhash.xxh3_64_intdigest, "UBIGINT"),
        )
        for name, digest, result in functions:
            con.create_function(name, _over_text(digest), ["VARCHAR"], result, side_effects=False)


def _over_text(digest: Any) -> Any:
    def hashed(text: str) -> int:
        return int(digest(text.encode("utf-8"), seed=0))

    return hashed


# -- graphs and stores --------------------------------------------------------------------


def use_graph(graph: dict[str, Any]) -> mx.FeatureGraph:
    """A Metaxy graph of the request's spec dumps; also sets the global config."""
    MetaxyConfig.set(MetaxyConfig(project=graph["project"], hash_truncation_length=graph["length"]))
    built = mx.FeatureGraph()
    for dump in graph["features"]:
        spec = mx.FeatureSpec.model_validate(dump)
        name = "F_" + spec.key.table_name
        definition = FeatureDefinition.from_stored_data(
            feature_spec=spec.model_dump(mode="json"),
            feature_schema={},
            feature_class_path=f"interop_features.{name}",
            project=graph["project"],
        )
        built.add_feature_definition(definition)
    return built


def open_store(store: dict[str, Any]) -> Any:
    """The store of a request; its ``fallbacks`` (store descriptions too, in order) become
    Metaxy's ``fallback_stores``."""
    algorithm = HashAlgorithm(store["algorithm"])
    fallbacks = [open_store(f) for f in store.get("fallbacks", ())]
    if store["backend"] == "duckdb":
        return StandInDuckDBStore(
            database=store["path"],
            hash_algorithm=algorithm,
            auto_create_tables=True,
            fallback_stores=fallbacks,
        )
    return DeltaMetadataStore(
        root_path=store["path"], hash_algorithm=algorithm, fallback_stores=fallbacks
    )


@contextmanager
def opened(store: dict[str, Any], mode: str) -> Iterator[Any]:
    """The request's store, open in ``mode``, its fallback stores open ("r") around it.

    Metaxy opens a fallback store only inside ``read``, and closes it before the lazy frame
    it returns is collected (a DuckDB fallback: "Connection already closed!" in
    ``resolve_update``); ``has_feature(..., check_fallback=True)`` needs it open already
    (``StoreNotOpenError``)."""
    opened_store = open_store(store)
    with ExitStack() as stack:
        chain = list(opened_store.fallback_stores)
        while chain:
            fallback = chain.pop(0)
            stack.enter_context(fallback.open("r"))
            chain.extend(fallback.fallback_stores)
        yield stack.enter_context(opened_store.open(mode))


def sample_key(spec: mx.FeatureSpec) -> list[str]:
    """What a sample of the increment is: the ids, or an expansion's ``on`` columns (the
    orphaned frame of an expansion carries one arbitrary child id per parent)."""
    for dep in spec.deps:
        relationship = dep.lineage.relationship
        if relationship.type.value == "1:N":
            return list(relationship.on)
    return list(spec.id_columns)


def ids_of(frame: pl.DataFrame, id_columns: list[str]) -> list[list[str]]:
    present = [c for c in id_columns if c in frame.columns]
    if not present or frame.height == 0:
        return []
    rows = frame.select(present).unique().sort(present).rows()
    return [[str(v) for v in row] for row in rows]


def polars(frame: Any) -> pl.DataFrame:
    native = frame.to_polars() if hasattr(frame, "to_polars") else frame
    return native if isinstance(native, pl.DataFrame) else pl.from_arrow(native)


def id_filter(frame: pl.DataFrame, id_columns: list[str]) -> nw.Expr:
    """Rows whose ids (those of ``id_columns`` the frame has) are among the frame's."""
    present = [c for c in id_columns if c in frame.columns]
    if len(present) == 1:
        return nw.col(present[0]).is_in(frame[present[0]].unique().to_list())
    rows = frame.select(present).unique().rows()
    return nw.any_horizontal(
        *[
            nw.all_horizontal(
                *[nw.col(c) == v for c, v in zip(present, row, strict=True)], ignore_nulls=False
            )
            for row in rows
        ],
        ignore_nulls=False,
    )


# -- what an asset makes of the increment --------------------------------------------------


def computed_rows(
    spec: mx.FeatureSpec, rows: pl.DataFrame, expansion: dict[str, Any] | None
) -> pl.DataFrame:
    ids = list(spec.id_columns)
    # The increment carries the upstreams' `metaxy_deleted_at` (`_right` from the second
    # dep on); an asset's output would not, and a table holding `metaxy_deleted_at_right`
    # breaks Metaxy's own join in a feature downstream with two more deps.
    rows = rows.drop([c for c in rows.columns if c.startswith("metaxy_deleted_at_right")])
    kinds = {dep.lineage.relationship.type.value for dep in spec.deps}
    if "N:1" in kinds:
        # One row per sample: Metaxy returns one increment row per upstream row.
        keep = [c for c in rows.columns if c in ids or c.startswith("metaxy_")]
        return rows.select(keep).unique(subset=ids, keep="first", maintain_order=True)
    if "1:N" in kinds and expansion is not None:
        parent, child = expansion["on"], expansion["column"]
        children = pl.DataFrame(
            [
                {parent: key, child: value}
                for key, values in expansion["children"].items()
                for value in values
            ],
            schema={parent: pl.String, child: pl.String},
        )
        return rows.join(children, on=parent, how="inner")
    return rows


# -- commands ---------------------------------------------------------------------------


def cmd_versions(request: dict[str, Any]) -> dict[str, Any]:
    graph = use_graph(request["graph"])
    with graph.use():
        order = [k.to_string() for k in graph.topological_sort_features()]
        features = {}
        for key in order:
            spec = graph.get_feature_definition(key).spec
            features[key] = {
                "feature_version": graph.get_feature_version(key),
                "field_versions": graph.get_feature_version_by_field(key),
                "code_version": spec.code_version,
                "spec_version": spec.feature_spec_version,
            }
        return {"order": order, "features": features}


def cmd_init(request: dict[str, Any]) -> dict[str, Any]:
    """Create the store's files with Metaxy's libraries (an empty DuckDB database)."""
    use_graph(request["graph"])
    Path(request["store"]["path"]).parent.mkdir(parents=True, exist_ok=True)
    with opened(request["store"], "w"):
        pass
    return {}


def cmd_step(request: dict[str, Any]) -> dict[str, Any]:
    graph = use_graph(request["graph"])
    samples = request.get("samples", {})
    expansions = request.get("expansions", {})
    report: dict[str, Any] = {}
    with graph.use(), opened(request["store"], "w") as store:
        for key in graph.topological_sort_features():
            name = key.to_string()
            spec = graph.get_feature_definition(key).spec
            ids = sample_key(spec)
            if spec.deps:
                inc = store.resolve_update(key)
            else:
                inc = store.resolve_update(key, samples=sample_frame(samples[name]))
            new, stale, orphaned = (polars(f) for f in (inc.new, inc.stale, inc.orphaned))
            report[name] = {
                "new": ids_of(new, ids),
                "stale": ids_of(stale, ids),
                "orphaned": ids_of(orphaned, ids),
            }
            todo = pl.concat([new, stale], how="diagonal_relaxed")
            # Written even when empty: Metaxy raises on a dependency whose table does not
            # exist (FeatureNotFoundError, optional deps too), where mxd sees no rows.
            if todo.height or not store.has_feature(key, check_fallback=False):
                store.write(key, computed_rows(spec, todo, expansions.get(name)))
            if orphaned.height:
                store.delete(key, id_filter(orphaned, ids), soft=True)
    return {"features": report}


def cmd_check(request: dict[str, Any]) -> dict[str, Any]:
    """Read-only: what a step would find to do, per feature (counts of samples); with
    ``read``, also every feature's current rows as Metaxy reads them."""
    graph = use_graph(request["graph"])
    samples = request.get("samples", {})
    report: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    with graph.use(), opened(request["store"], "r") as store:
        for key in graph.topological_sort_features():
            name = key.to_string()
            spec = graph.get_feature_definition(key).spec
            ids = sample_key(spec)
            engine = request.get("engine", "auto")
            if spec.deps:
                inc = store.resolve_update(key, versioning_engine=engine)
            else:
                inc = store.resolve_update(
                    key, samples=sample_frame(samples[name]), versioning_engine=engine
                )
            report[name] = {
                kind: len(ids_of(polars(frame), ids))
                for kind, frame in (
                    ("new", inc.new),
                    ("stale", inc.stale),
                    ("orphaned", inc.orphaned),
                )
            }
            if request.get("read"):
                rows[name] = current_rows(store, key, spec)
    return {"features": report, "rows": rows}


def cmd_ensure_tables(request: dict[str, Any]) -> dict[str, Any]:
    """Create, empty, the tables of features that have none (what Metaxy's own runner here
    leaves after a step without rows); Metaxy raises on a dependency without a table."""
    graph = use_graph(request["graph"])
    samples = request.get("samples", {})
    created = []
    with graph.use(), opened(request["store"], "w") as store:
        for key in graph.topological_sort_features():
            if store.has_feature(key, check_fallback=False):
                continue
            spec = graph.get_feature_definition(key).spec
            if spec.deps:
                inc = store.resolve_update(key)
            else:
                inc = store.resolve_update(key, samples=sample_frame(samples[key.to_string()]))
            empty = pl.concat([polars(inc.new), polars(inc.stale)], how="diagonal_relaxed")
            store.write(key, computed_rows(spec, empty.head(0), None))
            created.append(key.to_string())
    return {"created": created}


def cmd_delete(request: dict[str, Any]) -> dict[str, Any]:
    graph = use_graph(request["graph"])
    with graph.use(), opened(request["store"], "w") as store:
        column = request["column"]
        store.delete(request["feature"], nw.col(column).is_in(request["values"]), soft=True)
    return {}


def current_rows(
    store: Any, key: Any, spec: mx.FeatureSpec, fallback: bool = False
) -> list[dict[str, Any]] | None:
    """None: the store (with ``fallback``, nor any of its fallback stores) has no table."""
    if not store.has_feature(key, check_fallback=fallback):
        return None
    frame = polars(store.read(key, allow_fallback=fallback).collect())
    return frame.select([*spec.id_columns, *SYSTEM]).to_dicts()


def cmd_read(request: dict[str, Any]) -> dict[str, Any]:
    """Every feature's current rows as Metaxy reads them: ids and the hash columns; with
    ``fallback``, a feature the store lacks is read from its fallback stores."""
    graph = use_graph(request["graph"])
    fallback = bool(request.get("fallback"))
    with graph.use(), opened(request["store"], "r") as store:
        return {
            "features": {
                key.to_string(): current_rows(
                    store, key, graph.get_feature_definition(key).spec, fallback
                )
                for key in graph.topological_sort_features()
            }
        }


def cmd_push_snapshot(request: dict[str, Any]) -> dict[str, Any]:
    graph = use_graph(request["graph"])
    with graph.use(), opened(request["store"], "w") as store:
        result = SystemTableStorage(store).push_graph_snapshot(project=request["graph"]["project"])
    return {"project_version": result.project_version}


def cmd_load_snapshot(request: dict[str, Any]) -> dict[str, Any]:
    """The latest graph snapshot of the project, rebuilt by Metaxy: key -> feature version."""
    graph = use_graph(request["graph"])
    project = request["graph"]["project"]
    with graph.use(), opened(request["store"], "r") as store:
        storage = SystemTableStorage(store)
        version = storage._read_latest_project_version(project)
        loaded = storage.load_graph_from_snapshot(version, project=project)
        with loaded.use():
            return {
                "project_version": version,
                "features": {
                    k.to_string(): loaded.get_feature_version(k)
                    for k in loaded.feature_definitions_by_key
                },
            }


def sample_frame(samples: dict[str, Any]) -> pl.DataFrame:
    """Root samples: ``{"strings": [...], "structs": {name: [fields]}, "rows": [...]}``."""
    schema: dict[str, pl.DataType] = {name: pl.String for name in samples["strings"]}
    for name, fields in samples["structs"].items():
        schema[name] = pl.Struct({f: pl.String for f in fields})
    return pl.DataFrame(samples["rows"], schema=schema)


COMMANDS = {
    "versions": cmd_versions,
    "init": cmd_init,
    "step": cmd_step,
    "check": cmd_check,
    "delete": cmd_delete,
    "ensure_tables": cmd_ensure_tables,
    "read": cmd_read,
    "push_snapshot": cmd_push_snapshot,
    "load_snapshot": cmd_load_snapshot,
}


def main() -> None:
    print(json.dumps({"ready": mx.__version__}), file=PROTOCOL_OUT, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = {"id": request["id"], "ok": True, "result": COMMANDS[request["cmd"]](request)}
        except Exception:
            answer = {"id": request["id"], "ok": False, "error": traceback.format_exc()}
        print(json.dumps(answer, default=str), file=PROTOCOL_OUT, flush=True)


if __name__ == "__main__":
    main()
