"""The floor: the tightest pure-Polars code for the logical work of each benchmark phase.

It computes what mxd computes for the synthetic graph — the same provenance strings
(polars-hash xxhash32, Metaxy's recipes), the same increments, tombstones and observation
fingerprints — but is written for this one graph, so nothing is generic. The harness
checks that its counts and fingerprints equal mxd's.

Its store is Metaxy-shaped and append-only: per feature, numbered Parquet parts (a run adds
one with the computed rows and the tombstone copies of orphaned rows; a soft delete adds one
of tombstones), each part's ids unique, the same columns as mxd writes. The current row of
an id is the one in the newest part that has it. ``manifest.json`` holds per table its part
count, current row count and last write time (write marks, kept by every write), and per
feature the checkpoint of its last complete run: the root file's token, its own and its
upstreams' part counts.

With checkpoints (the default) a feature whose inputs did not move is settled without
reading a row, and one whose inputs moved is resolved only for the ids in the parts added
since: work proportional to the change. ``full=True`` ignores checkpoints and resolves
every feature over all its rows (what a tool without them must do).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import polars_hash  # noqa: F401  (registers .nchash)
from synthetic import (
    CAPTIONS,
    CLIPS,
    DELETE_SHARD,
    EMBEDDINGS,
    HASH_TRUNCATION,
    ID,
    ROOT_FILES,
    SCORES,
)

PBF, PROV = "metaxy_provenance_by_field", "metaxy_provenance"
DVBF, DV = "metaxy_data_version_by_field", "metaxy_data_version"
FEATURE_VERSION, PROJECT_VERSION = "metaxy_feature_version", "metaxy_project_version"
CREATED, UPDATED, DELETED = "metaxy_created_at", "metaxy_updated_at", "metaxy_deleted_at"
RUN = "metaxy_materialization_id"
TIMESTAMP = pl.Datetime("us", "UTC")
OBSERVATIONS = "__floor/observations"

ORDER = (CAPTIONS, CLIPS, EMBEDDINGS, SCORES)  # mxd's topological order
ROOT_FIELDS = {CLIPS: ("frames", "audio"), CAPTIONS: ("caption", "label")}  # spec order
# Downstream: the upstream columns read (stored name -> name in the rows) and, per field,
# its parent fields in fully-qualified-string order (the order they enter the hash).
UPSTREAM_COLUMNS = {
    EMBEDDINGS: {
        CLIPS: {"frames": "frames", "audio": "audio"},
        CAPTIONS: {"caption": "text", "label": "label"},
    },
    SCORES: {EMBEDDINGS: {"embedding": "embedding", "quality": "quality"}},
}
PARENTS = {
    EMBEDDINGS: {
        "embedding": ((CAPTIONS, "caption"), (CLIPS, "frames")),
        "quality": ((CAPTIONS, "label"), (CLIPS, "audio")),
    },
    SCORES: {"score": ((EMBEDDINGS, "embedding"),)},
}
WRITE_OPTIONS: dict[str, Any] = {"compression": "uncompressed", "statistics": False}  # fastest
_HALF, _MOD = 1 << 32, 1 << 64


def digest(text: pl.Expr) -> pl.Expr:
    """``T(xxhash32(text))`` as decimal text. xxhash32 has at most 10 digits: a truncation
    of 10 or more changes nothing and is skipped."""
    out = text.nchash.xxhash32().cast(pl.String)
    return out if HASH_TRUNCATION >= 10 else out.str.slice(0, HASH_TRUNCATION)


def fields_of(feature: str) -> tuple[str, ...]:
    return ROOT_FIELDS.get(feature) or tuple(PARENTS[feature])


def run_asset(feature: str, rows: pl.DataFrame) -> pl.DataFrame:
    """The downstream assets of the synthetic pipeline (identity-like)."""
    if feature == EMBEDDINGS:
        return rows.select(ID, embedding=pl.col("frames"), quality=pl.col("audio"))
    return rows.select(ID, score=pl.col("embedding"))


# Distinct 64-bit hashes prove distinct ids and count 5x faster than the strings; only on
# a collision (or a real duplicate) are the strings themselves compared.
_HASHED_IDS = pl.col(ID).hash().n_unique()


def distinct_ids(frame: pl.LazyFrame) -> int:
    rows, hashes = frame.select(pl.len(), _HASHED_IDS).collect().row(0)
    return (
        int(rows) if hashes == rows else int(frame.select(pl.col(ID).n_unique()).collect().item())
    )


def check_ids(frame: pl.DataFrame, feature: str) -> None:
    ids = frame[ID]
    unique = ids.hash().n_unique() == frame.height or ids.n_unique() == frame.height
    if ids.null_count() or not unique:
        raise ValueError(f"{feature}: null or duplicate ids")


@dataclass
class Change:
    """A feature's increment: counts, and (for runs) the rows to compute."""

    new: int
    stale: int
    orphaned: pl.DataFrame  # ids
    todo: pl.DataFrame | None = None
    fields: dict[str, int] | None = None  # stale samples per changed field (status causes)


class Floor:
    """One floor process over a data folder (the root files) and a floor store folder."""

    def __init__(self, data: Path, store: Path, *, full: bool = False) -> None:
        self.data, self.store, self.full = data, store, full
        store.mkdir(parents=True, exist_ok=True)
        path = store / "manifest.json"
        empty: dict[str, Any] = {"tables": {}, "checkpoints": {}}
        self.manifest = json.loads(path.read_text()) if path.exists() else empty
        self.memory: dict[str, pl.DataFrame] = {}  # tables this process wrote whole
        self.at = datetime.now(timezone.utc)
        self.run_id = "floor-" + self.at.strftime("%Y%m%dT%H%M%S")

    # the store
    def table(self, feature: str) -> dict[str, Any]:
        found: dict[str, Any] = self.manifest["tables"].get(feature, {"parts": 0, "rows": 0})
        return found

    def part(self, feature: str, index: int) -> Path:
        return self.store / feature.replace("/", "__") / f"part-{index:05d}.parquet"

    def save(self) -> None:
        path = self.store / "manifest.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.manifest))
        path.with_suffix(".tmp").replace(path)

    def append(self, feature: str, frame: pl.DataFrame, rows_delta: int) -> None:
        table = self.table(feature)
        path = self.part(feature, table["parts"])
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, **WRITE_OPTIONS)
        if table["parts"] == 0:
            self.memory[feature] = frame
        self.manifest["tables"][feature] = {
            "parts": table["parts"] + 1,
            "rows": table["rows"] + rows_delta,
            "last_write": self.at.isoformat(),
        }

    def current(
        self, feature: str, columns: list[str] | None, ids: pl.Series | None = None
    ) -> pl.LazyFrame | None:
        """Current rows of ``feature`` (tombstoned ids dropped), optionally only ``ids``."""
        parts = self.table(feature)["parts"]
        if parts == 0:
            return None
        wanted = None if columns is None else list(dict.fromkeys([*columns, DELETED]))
        if parts == 1 and feature in self.memory:
            scans = [self.memory[feature].lazy()]
        else:
            scans = [pl.scan_parquet(self.part(feature, i)) for i in range(parts)]
        # Newest part first; an older part gives only the ids no newer part has.
        pieces: list[pl.LazyFrame] = []
        newer: pl.LazyFrame | None = None
        for index in reversed(range(len(scans))):
            frame = scans[index] if wanted is None else scans[index].select(wanted)
            if ids is not None:
                frame = frame.filter(pl.col(ID).is_in(ids.implode()))
            if newer is not None:
                frame = frame.join(newer, on=ID, how="anti")
            pieces.append(frame)
            if index:
                these = scans[index].select(ID)
                newer = these if newer is None else pl.concat([newer, these])
        rows = pl.concat(pieces) if len(pieces) > 1 else pieces[0]
        rows = rows.filter(pl.col(DELETED).is_null())
        return rows if columns is None or DELETED in columns else rows.drop(DELETED)

    # checkpoints
    def _state(self, feature: str) -> dict[str, Any]:
        state: dict[str, Any] = {"own": self.table(feature)["parts"]}
        if feature in ROOT_FILES:
            stat = os.stat(self.data / ROOT_FILES[feature])
            state["token"] = f"{stat.st_size}:{stat.st_mtime_ns}"
        for up in UPSTREAM_COLUMNS.get(feature, {}):
            state[up] = self.table(up)["parts"]
        return state

    def plan(self, feature: str) -> tuple[str, pl.Series | None]:
        """("settled", None): nothing moved; ("changed", ids): only these ids can have
        moved; ("full", None): resolve everything."""
        saved = self.manifest["checkpoints"].get(feature)
        if self.full or saved is None:
            return "full", None
        now = self._state(feature)
        if now.get("token") != saved.get("token"):
            return "full", None
        tables = [(feature, "own"), *((up, up) for up in UPSTREAM_COLUMNS.get(feature, {}))]
        added = [self.part(t, i) for t, key in tables for i in range(saved[key], now[key])]
        if not added:
            return "settled", None
        ids = pl.concat([pl.scan_parquet(p).select(ID) for p in added]).unique().collect()
        return "changed", ids[ID]

    def checkpoint(self, feature: str) -> None:
        self.manifest["checkpoints"][feature] = self._state(feature)

    # expected rows
    def _root_expected(
        self, feature: str, ids: pl.Series | None, *, every_column: bool
    ) -> pl.LazyFrame:
        fields = ROOT_FIELDS[feature]
        samples = pl.scan_parquet(self.data / ROOT_FILES[feature])
        if not every_column:
            samples = samples.select(ID, *fields)
        if ids is not None:
            samples = samples.filter(pl.col(ID).is_in(ids.implode()))
        hashed = [
            digest(pl.concat_str(pl.lit(f"{f}="), pl.col(f).cast(pl.String)).fill_null(f)).alias(
                f"__h_{f}"
            )
            for f in fields
        ]
        order = [pl.col(f"__h_{f}") for f in sorted(fields)]
        return samples.with_columns(hashed).with_columns(
            digest(pl.concat_str(order, separator="|")).alias(PROV)
        )

    def _downstream_expected(self, feature: str, ids: pl.Series | None) -> pl.LazyFrame | None:
        joined: pl.LazyFrame | None = None
        for up, names in UPSTREAM_COLUMNS[feature].items():
            read = sorted({f for ps in PARENTS[feature].values() for u, f in ps if u == up})
            rows = self.current(up, [ID, *names, DVBF], ids)
            if rows is None:
                return None
            rows = rows.select(
                ID,
                *[pl.col(old).alias(new) for old, new in names.items()],
                *[pl.col(DVBF).struct.field(f).alias(f"__dv_{up}.{f}") for f in read],
            )
            joined = rows if joined is None else joined.join(rows, on=ID, how="inner")
        assert joined is not None
        hashed = []
        for field, parents in PARENTS[feature].items():
            # "field|code_version|parent|dv(parent)|...": the literal parts merged.
            parts: list[pl.Expr] = []
            prefix = f"{field}|1|"
            for up, name in parents:
                parts += [pl.lit(f"{prefix}{up}.{name}|"), pl.col(f"__dv_{up}.{name}")]
                prefix = "|"
            hashed.append(digest(pl.concat_str(parts)).alias(f"__h_{field}"))
        order = [pl.col(f"__h_{f}") for f in sorted(PARENTS[feature])]
        return (
            joined.with_columns(hashed)
            .drop(pl.selectors.starts_with("__dv_"))
            .with_columns(digest(pl.concat_str(order, separator="|")).alias(PROV))
        )

    # increments
    def change(
        self, feature: str, ids: pl.Series | None, *, rows: bool, causes: bool = False
    ) -> Change:
        """The increment of one feature (over ``ids`` only, when given)."""
        if feature in ROOT_FIELDS:
            expected = self._root_expected(feature, ids, every_column=rows)
        else:
            found = self._downstream_expected(feature, ids)
            if found is None:
                stored_ids = self.current(feature, [ID], ids)
                gone = pl.DataFrame() if stored_ids is None else stored_ids.collect()
                return Change(0, 0, gone)
            expected = found
        fields = fields_of(feature)
        causes = causes and feature in ROOT_FIELDS
        stored = self.current(feature, [ID, PROV, *([PBF] if causes else [])], ids)
        if stored is None:
            if rows:
                todo = expected.collect()
                return Change(todo.height, 0, pl.DataFrame({ID: []}, schema={ID: pl.String}), todo)
            count = distinct_ids(expected)
            return Change(count, 0, pl.DataFrame({ID: []}, schema={ID: pl.String}))
        was = [pl.col(PBF).struct.field(f).alias(f"__was_{f}") for f in fields] if causes else []
        stored = stored.select(ID, pl.col(PROV).alias("__stored"), *was)
        gone = stored.join(expected.select(ID), on=ID, how="anti").select(ID)
        matched = expected.join(stored, on=ID, how="left")
        is_new = pl.col("__stored").is_null()
        is_stale = ~is_new & (pl.col(PROV) != pl.col("__stored"))
        if rows:
            # mxd checks every sample a root asset returns: ids non-null and unique.
            checks = [expected.select(pl.len() - _HASHED_IDS + pl.col(ID).null_count())]
            todo, orphaned, *bad = pl.collect_all(
                [
                    matched.filter(is_new | is_stale)
                    .with_columns(is_new.alias("__new"))
                    .drop("__stored"),
                    gone,
                    *(checks if feature in ROOT_FIELDS and ids is None else []),
                ]
            )
            if bad and bad[0].item():  # a hash collision, a duplicate or a null: look closer
                check_ids(expected.select(ID).collect(), feature)
            new = int(todo["__new"].sum())
            return Change(new, todo.height - new, orphaned, todo.drop("__new"))
        moved = [
            (pl.col(f"__h_{f}") != pl.col(f"__was_{f}")).filter(is_stale).sum().alias(f)
            for f in fields
            if causes
        ]
        counts, orphaned = pl.collect_all(
            [
                matched.select(
                    pl.col(ID).filter(is_new).n_unique().alias("new"),
                    pl.col(ID).filter(is_stale).n_unique().alias("stale"),
                    *moved,
                ),
                gone,
            ]
        )
        row = counts.row(0, named=True)
        moved_counts = {f: int(row[f]) for f in fields} if causes else None
        return Change(row["new"], row["stale"], orphaned, fields=moved_counts)

    # writing an increment
    def _stamp(self, feature: str, rows: pl.DataFrame) -> pl.DataFrame:
        fields = fields_of(feature)
        by_field = pl.struct([pl.col(f"__h_{f}").alias(f) for f in fields])
        version = hashlib.sha256(feature.encode()).hexdigest()[:HASH_TRUNCATION]
        return rows.select(
            pl.exclude(PROV, "^__h_.*$"),
            by_field.alias(PBF),
            PROV,
            by_field.alias(DVBF),
            pl.col(PROV).alias(DV),
            pl.lit(version).alias(FEATURE_VERSION),
            pl.lit(version).alias(PROJECT_VERSION),
            pl.lit(self.at, TIMESTAMP).alias(CREATED),
            pl.lit(self.at, TIMESTAMP).alias(UPDATED),
            pl.lit(None, TIMESTAMP).alias(DELETED),
            pl.lit(self.run_id).alias(RUN),
        )

    def _computed(self, feature: str, todo: pl.DataFrame) -> pl.DataFrame:
        """The asset's rows with the increment's provenance, checked like mxd checks them."""
        if feature in ROOT_FIELDS:
            check_ids(todo, feature)
            return todo
        output = run_asset(feature, todo.drop(PROV, pl.selectors.starts_with("__h_")))
        check_ids(output, feature)
        given = todo.select(ID, PROV, pl.selectors.starts_with("__h_"))
        if output.height == todo.height and output[ID].equals(todo[ID]):
            return output.hstack(given.drop(ID))  # same samples, same order: no join needed
        attached = output.join(given, on=ID, how="inner")
        if attached.height != output.height:
            raise ValueError(f"{feature}: asset returned samples outside its chunk")
        return attached

    def _tombstones(self, feature: str, ids: pl.Series) -> pl.DataFrame:
        rows = self.current(feature, None, ids)
        assert rows is not None
        return rows.collect().with_columns(
            pl.lit(self.at, TIMESTAMP).alias(DELETED), pl.lit(self.run_id).alias(RUN)
        )

    def _write(self, feature: str, change: Change) -> tuple[int, int]:
        assert change.todo is not None
        parts = []
        if change.todo.height:
            parts.append(self._stamp(feature, self._computed(feature, change.todo)))
        if change.orphaned.height:
            parts.append(self._tombstones(feature, change.orphaned[ID]))
        if parts:
            frame = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
            self.append(feature, frame, change.new - change.orphaned.height)
        return change.todo.height, change.orphaned.height

    # phases
    def status(
        self, features: tuple[str, ...] = ORDER, *, causes: bool = True
    ) -> dict[str, dict[str, int]]:
        """Per feature: stored, new, stale, orphaned, unchanged (``causes``: and how many
        fields moved in the stale samples of roots, as ``mxd status`` names them)."""
        result = {}
        for feature in features:
            kind, ids = self.plan(feature)
            stored = self.table(feature)["rows"]
            if kind == "settled":
                result[feature] = _counts(stored, 0, 0, 0)
                continue
            change = self.change(feature, ids, rows=False, causes=causes)
            orphaned = change.orphaned.height
            result[feature] = _counts(stored, change.new, change.stale, orphaned)
            if change.fields:
                result[feature]["fields"] = sum(1 for n in change.fields.values() if n)
        return result

    def materialize(self, features: tuple[str, ...] = ORDER) -> dict[str, dict[str, int]]:
        """Run every feature (of ``features``) on its increment, then checkpoint it."""
        result = {}
        for feature in features:
            kind, ids = self.plan(feature)
            stored = self.table(feature)["rows"]
            if kind == "settled":
                result[feature] = {**_counts(stored, 0, 0, 0), "written": 0, "deleted": 0}
                continue
            change = self.change(feature, ids, rows=True)
            written, deleted = self._write(feature, change)
            counts = _counts(stored, change.new, change.stale, change.orphaned.height)
            result[feature] = {**counts, "written": written, "deleted": deleted}
            self.checkpoint(feature)
            self.save()
        return result

    def delete(self) -> dict[str, dict[str, int]]:
        """Soft-delete the current clips of one shard (``shard = DELETE_SHARD``)."""
        rows = self.current(CLIPS, None)
        assert rows is not None
        matched = rows.filter(pl.col("shard") == DELETE_SHARD).collect()
        tombstones = matched.with_columns(
            pl.lit(self.at, TIMESTAMP).alias(DELETED), pl.lit(None, pl.String).alias(RUN)
        )
        if tombstones.height:
            self.append(CLIPS, tombstones, -tombstones.height)
            self.save()
        return {CLIPS: {"matched": matched.height, "deleted": matched.height}}

    def observe(self) -> dict[str, dict[str, Any]]:
        """Per feature: rows, fingerprint, mean created_at, last write, how far behind."""
        behind = self.status(causes=False)
        previous = self._previous_fingerprints()
        result: dict[str, dict[str, Any]] = {}
        for feature in ORDER:
            rows = self.current(feature, [ID, DV, CREATED])
            content = content_summary(rows)
            content["last_written_at"] = self.table(feature).get("last_write")
            fingerprint = content["fingerprint"]
            was = previous.get(feature)
            content["changed"] = content["rows"] > 0 if was is None else was != fingerprint
            for kind in ("new", "stale", "orphaned"):
                content[f"behind_{kind}"] = behind[feature][kind]
            result[feature] = content
        frame = pl.DataFrame(
            [{"feature": f, "observed_at": self.at, **v} for f, v in result.items()]
        )
        self.append(OBSERVATIONS, frame, frame.height)
        self.save()
        return result

    def _previous_fingerprints(self) -> dict[str, str]:
        seen = self.current(OBSERVATIONS, ["feature", "fingerprint", "observed_at"])
        if seen is None:
            return {}
        latest = seen.sort("observed_at").group_by("feature").agg(pl.col("fingerprint").last())
        return dict(latest.collect().iter_rows())


def _counts(stored: int, new: int, stale: int, orphaned: int) -> dict[str, int]:
    unchanged = stored - stale - orphaned
    return {
        "stored": stored,
        "new": new,
        "stale": stale,
        "orphaned": orphaned,
        "unchanged": unchanged,
    }


def content_summary(rows: pl.LazyFrame | None) -> dict[str, Any]:
    """Row count, mean created_at and the order-independent fingerprint mxd observes."""
    if rows is None:
        return {"rows": 0, "data_version": "empty", "fingerprint": "0" * 32}
    text = pl.concat_str(
        [
            pl.lit(f"{ID}=") + pl.col(ID).fill_null("\x00"),
            pl.lit("dv=") + pl.col(DV).fill_null("\x00"),
        ],
        separator="|",
    )
    sums = []
    for name, hashed in (("a", text.nchash.xxhash64()), ("b", text.nchash.wyhash())):
        sums += [
            (hashed // _HALF).sum().alias(f"{name}_hi"),
            (hashed % _HALF).sum().alias(f"{name}_lo"),
        ]
    stats = rows.select(pl.len().alias("rows"), pl.col(CREATED).mean().alias("mean"), *sums)
    row = stats.collect().row(0, named=True)
    a = (row["a_hi"] * _HALF + row["a_lo"]) % _MOD
    b = (row["b_hi"] * _HALF + row["b_lo"]) % _MOD
    mean = row["mean"]
    return {
        "rows": row["rows"],
        "data_version": "empty" if not row["rows"] else mean.isoformat(),
        "fingerprint": f"{a:016x}{b:016x}",
    }


DOWNSTREAM = (EMBEDDINGS, SCORES)

PHASES = {
    "status": Floor.status,
    "materialize": Floor.materialize,
    "materialize_root": lambda floor: floor.materialize((CLIPS,)),
    "status_downstream": lambda floor: floor.status(DOWNSTREAM),
    "delete": Floor.delete,
    "observe": Floor.observe,
}
