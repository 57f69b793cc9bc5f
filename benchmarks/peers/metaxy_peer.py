"""The benchmark's synthetic graph run by Metaxy 0.1.11 itself: one phase per process.

    <metaxy venv>/bin/python benchmarks/peers/metaxy_peer.py --timing T.json
        --store duckdb|delta --location DIR --data DIR [--extension-repository NAME] PHASE

Runs inside the peer's own virtual environment (``benchmarks/.peers/metaxy-0.1.11/``,
made by ``peers/environment.py``), never in mxd's, and uses only Metaxy's public API:
``BaseFeature``/``FeatureSpec``/``FieldSpec``/``FeatureDep``/``FieldDep`` for the graph of
``synthetic.py``, ``DuckDBMetadataStore`` or ``DeltaMetadataStore``, ``resolve_update``,
``write``, ``read``, ``delete(soft=True)`` and the status helper behind ``metaxy status``.
Hash settings as mxd's: xxhash32 (both stores' default), ``hash_truncation_length`` 64.

Root samples are what mxd's root assets return, with ``metaxy_provenance_by_field``
derived as mxd derives it (``"<field>=<value>"`` hashed with xxhash32 per field), so the
counts and fingerprints can be compared with the floor's. Downstream assets are the
identity-like ones of the synthetic pipeline. The timing file has the same keys as
``phase.py``'s; ``result`` holds per-feature counts in the floor's shape.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (after the clock starts)
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import metaxy as mx  # noqa: E402
import narwhals as nw  # noqa: E402
import polars as pl  # noqa: E402
import polars_hash  # noqa: E402, F401  (registers .nchash)
from floor import content_summary  # noqa: E402
from metaxy.graph.status import count_lazy_rows, get_feature_metadata_status  # noqa: E402
from metaxy.metadata_store.exceptions import FeatureNotFoundError  # noqa: E402
from synthetic import (  # noqa: E402
    CAPTIONS,
    CLIPS,
    DELETE_SHARD,
    EMBEDDINGS,
    HASH_TRUNCATION,
    ID,
    ROOT_FILES,
    SCORES,
)
from timing import measure  # noqa: E402

ORDER = (CAPTIONS, CLIPS, EMBEDDINGS, SCORES)
DOWNSTREAM = (EMBEDDINGS, SCORES)
ROOT_FIELDS = {CLIPS: ("frames", "audio"), CAPTIONS: ("caption", "label")}
DV, CREATED = "metaxy_data_version", "metaxy_created_at"
SYSTEM = "^metaxy_.*$"
NO_OBSERVE = (
    "Metaxy has no observe: the peer reads every feature's current rows (count and "
    "content fingerprint); no lag behind upstream, nothing recorded"
)


def define_graph() -> dict[str, type[mx.BaseFeature]]:
    """The synthetic graph in Metaxy's own definitions (as ``synthetic.PIPELINE``)."""

    class Clips(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key=CLIPS,
            id_columns=[ID],
            fields=[
                mx.FieldSpec(key="frames", code_version="1"),
                mx.FieldSpec(key="audio", code_version="1"),
            ],
        ),
    ):
        pass

    class Captions(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key=CAPTIONS,
            id_columns=[ID],
            fields=[
                mx.FieldSpec(key="caption", code_version="1"),
                mx.FieldSpec(key="label", code_version="1"),
            ],
        ),
    ):
        pass

    class Embeddings(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key=EMBEDDINGS,
            id_columns=[ID],
            deps=[
                mx.FeatureDep(feature=Clips, select=("frames", "audio")),
                mx.FeatureDep(feature=Captions, rename={"caption": "text"}),
            ],
            fields=[
                mx.FieldSpec(
                    key="embedding",
                    code_version="1",
                    deps=[
                        mx.FieldDep(feature=Clips, fields=["frames"]),
                        mx.FieldDep(feature=Captions, fields=["caption"]),
                    ],
                ),
                mx.FieldSpec(
                    key="quality",
                    code_version="1",
                    deps=[
                        mx.FieldDep(feature=Clips, fields=["audio"]),
                        mx.FieldDep(feature=Captions, fields=["label"]),
                    ],
                ),
            ],
        ),
    ):
        pass

    class Scores(
        mx.BaseFeature,
        spec=mx.FeatureSpec(
            key=SCORES,
            id_columns=[ID],
            deps=[mx.FeatureDep(feature=Embeddings)],
            fields=[
                mx.FieldSpec(
                    key="score",
                    code_version="1",
                    deps=[mx.FieldDep(feature=Embeddings, fields=["embedding"])],
                )
            ],
        ),
    ):
        pass

    return {CLIPS: Clips, CAPTIONS: Captions, EMBEDDINGS: Embeddings, SCORES: Scores}


def root_samples(data: Path, feature: str) -> pl.LazyFrame:
    """Every current sample of a root, as its asset returns it, with per-field provenance."""
    hashed = [
        (pl.lit(f"{f}=") + pl.col(f).cast(pl.String)).nchash.xxhash32().cast(pl.String).alias(f)
        for f in ROOT_FIELDS[feature]
    ]
    frame = pl.scan_parquet(data / ROOT_FILES[feature])
    return frame.with_columns(pl.struct(hashed).alias("metaxy_provenance_by_field"))


def run_asset(feature: str, rows: pl.DataFrame) -> pl.DataFrame:
    """The synthetic pipeline's downstream assets; Metaxy's provenance columns kept."""
    if feature == EMBEDDINGS:
        computed = [pl.col("frames").alias("embedding"), pl.col("audio").alias("quality")]
    else:
        computed = [pl.col("embedding").alias("score")]
    return rows.select(ID, *computed, pl.col(SYSTEM))


class MetaxyRun:
    """One phase over one Metaxy store (opened for writing, as a pipeline run would)."""

    def __init__(self, store: mx.MetadataStore, data: Path) -> None:
        self.store, self.data = store, data
        self.features = define_graph()

    def _resolve(self, feature: str, *, lazy: bool) -> Any:
        samples = root_samples(self.data, feature) if feature in ROOT_FIELDS else None
        return self.store.resolve_update(self.features[feature], samples=samples, lazy=lazy)

    def _stored(self, feature: str) -> int:
        try:
            return count_lazy_rows(self.store.read(self.features[feature], columns=[ID]))
        except FeatureNotFoundError:
            return 0

    def status(self, features: tuple[str, ...] = ORDER) -> dict[str, dict[str, Any]]:
        """What ``metaxy status`` computes (its own helper for downstream features); roots
        are resolved against their samples the same way, as ``mxd status`` does."""
        result: dict[str, dict[str, Any]] = {}
        for feature in features:
            if feature in ROOT_FIELDS:
                increment = self._resolve(feature, lazy=True)
                counts = {
                    "stored": self._stored(feature),
                    "new": count_lazy_rows(increment.new),
                    "stale": count_lazy_rows(increment.stale),
                    "orphaned": count_lazy_rows(increment.orphaned),
                }
            else:
                try:
                    found = get_feature_metadata_status(self.features[feature], self.store).status
                except FeatureNotFoundError:  # an upstream was never written
                    counts = {"stored": self._stored(feature), "new": 0, "stale": 0, "orphaned": 0}
                else:
                    counts = {
                        "stored": found.store_row_count,
                        "new": found.missing_count,
                        "stale": found.stale_count,
                        "orphaned": found.orphaned_count,
                    }
            counts["unchanged"] = counts["stored"] - counts["stale"] - counts["orphaned"]
            result[feature] = counts
        return result

    def materialize(self, features: tuple[str, ...] = ORDER) -> dict[str, dict[str, Any]]:
        """Resolve each feature in topological order, write new ∪ stale (asset output with
        the increment's provenance), soft-delete the orphaned ids."""
        result: dict[str, dict[str, Any]] = {}
        for feature in features:
            increment = self._resolve(feature, lazy=False)
            todo = pl.concat(
                [increment.new.to_polars(), increment.stale.to_polars()], how="diagonal_relaxed"
            )
            orphaned = increment.orphaned.to_polars()[ID]
            if todo.height:
                rows = todo if feature in ROOT_FIELDS else run_asset(feature, todo)
                self.store.write(self.features[feature], rows)
            if orphaned.len():
                gone = nw.col(ID).is_in(orphaned.to_list())
                self.store.delete(self.features[feature], filters=gone, soft=True)
            result[feature] = {
                "new": increment.new.shape[0],
                "stale": increment.stale.shape[0],
                "orphaned": orphaned.len(),
                "written": todo.height,
                "deleted": orphaned.len(),
            }
        return result

    def delete(self) -> dict[str, dict[str, Any]]:
        """Soft-delete the current clips of one shard (``shard = DELETE_SHARD``)."""
        where = nw.col("shard") == DELETE_SHARD
        matched = count_lazy_rows(self.store.read(self.features[CLIPS], filters=[where]))
        self.store.delete(self.features[CLIPS], filters=where, soft=True)
        return {CLIPS: {"matched": matched, "deleted": matched}}

    def observe(self) -> dict[str, dict[str, Any]]:
        """No Metaxy equivalent (see NO_OBSERVE): rows and fingerprints only."""
        result: dict[str, dict[str, Any]] = {}
        for feature in ORDER:
            rows = self.store.read(self.features[feature], columns=[ID, DV, CREATED])
            frame = rows.select(ID, DV, CREATED).collect().to_polars()
            found = content_summary(frame.lazy())
            result[feature] = {"rows": found["rows"], "fingerprint": found["fingerprint"]}
        return result


PHASES: dict[str, Callable[[MetaxyRun], dict[str, dict[str, Any]]]] = {
    "status_empty": MetaxyRun.status,
    "materialize_first": MetaxyRun.materialize,
    "materialize_noop": MetaxyRun.materialize,
    "status_changed": MetaxyRun.status,
    "materialize_root": lambda run: run.materialize((CLIPS,)),
    "status_downstream": lambda run: run.status(DOWNSTREAM),
    "materialize_changed": MetaxyRun.materialize,
    "delete": MetaxyRun.delete,
    "observe": MetaxyRun.observe,
}
NOTES = {"observe": NO_OBSERVE}


def open_store(kind: str, location: Path, extension_repository: str | None) -> mx.MetadataStore:
    """A Metaxy store of ``kind`` at ``location`` (created on first write)."""
    location.mkdir(parents=True, exist_ok=True)
    if kind == "delta":
        from metaxy.ext.polars.handlers.delta import DeltaMetadataStore

        return DeltaMetadataStore(root_path=location / "delta", auto_create_tables=True)
    from metaxy.ext.duckdb import DuckDBMetadataStore
    from metaxy.ext.duckdb.metadata_store import ExtensionSpec

    # With a repository given, hashfuncs comes from there (peers/hashfuncs.c, built by the
    # harness under the working directory) and is loaded unsigned; installed extensions
    # stay in that directory, not in ~/.duckdb.
    extensions = [ExtensionSpec(name="hashfuncs", repository=extension_repository or "community")]
    config = None
    if extension_repository:
        installed = str(Path.cwd() / "duckdb-extensions")
        config = {"allow_unsigned_extensions": "true", "extension_directory": installed}
    return DuckDBMetadataStore(
        database=location / "metaxy.duckdb",
        extensions=extensions,
        config=config,
        auto_create_tables=True,
    )


def write_probe(
    kind: str, location: Path, extension_repository: str | None
) -> Callable[[], tuple[int, Any]]:
    """Metaxy's own current rows of bench/clips (read, not timed) and their ``write`` into a
    fresh store of the same kind (timed)."""
    features = define_graph()
    source = open_store(kind, location, extension_repository)
    with source.open("r"):
        frame = source.read(features[CLIPS]).collect().to_polars()
    target = open_store(kind, location / "write-probe", extension_repository)

    def work() -> tuple[int, Any]:
        with target.open("w"):
            target.write(features[CLIPS], frame)
        return 0, {"rows": frame.height, "bytes": frame.estimated_size()}

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timing", required=True)
    parser.add_argument("--store", choices=["duckdb", "delta"], required=True)
    parser.add_argument("--location", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--extension-repository")
    parser.add_argument("--profile")
    parser.add_argument("phase", choices=[*PHASES, "write"])
    opts = parser.parse_args()
    warnings.simplefilter("ignore")  # Metaxy warns when root samples are Polars frames
    mx.MetaxyConfig.set(
        mx.MetaxyConfig(
            project="bench", hash_truncation_length=HASH_TRUNCATION, auto_create_tables=True
        )
    )
    if opts.store == "duckdb":
        import duckdb  # noqa: F401  (imported before the clock, as phase.py preloads it)
    else:
        import deltalake  # noqa: F401

    if opts.phase == "write":
        work = write_probe(opts.store, opts.location, opts.extension_repository)
    else:
        phase = PHASES[opts.phase]

        def work() -> tuple[int, Any]:
            store = open_store(opts.store, opts.location, opts.extension_repository)
            with store.open("w"):
                counts = phase(MetaxyRun(store, opts.data))
            return 0, {"counts": counts, "note": NOTES.get(opts.phase)}

    measure(work, started=STARTED, timing=opts.timing, profile=opts.profile)


if __name__ == "__main__":
    main()
