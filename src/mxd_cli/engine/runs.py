"""Run history and checkpoints, kept in the store's ``__mxd`` system tables.

``__mxd/runs``: one row each time a run starts, ends, or is found dead; the latest row of a
run id is its state. A run killed outright stays ``running`` until the next writer takes
the store and closes it as ``interrupted``.

``__mxd/checkpoints``: after a feature finishes a complete (unrestricted) run, the state it
was computed from — its feature version and the write marks of its own and its upstreams'
tables. When a later run finds the same state, nothing upstream, in the code or in the
table changed, so the feature is up to date without reading a single row.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlglot import exp

from mxd_cli import __version__
from mxd_cli.engine.sql import alias, col, lit
from mxd_cli.store import columns as c
from mxd_cli.store.base import CHECKPOINTS, RUNS, MetadataStore, now_utc

RUN_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "project": pl.String(),
    "status": pl.String(),
    "started_at": c.TIMESTAMP,
    "finished_at": c.TIMESTAMP,
    "recorded_at": c.TIMESTAMP,
    "selection": pl.String(),  # JSON list
    "options": pl.String(),  # JSON object
    "features": pl.String(),  # JSON list of per-feature results
    "written": pl.Int64(),
    "deleted": pl.Int64(),
    "pid": pl.Int64(),
    "host": pl.String(),
    "mxd_version": pl.String(),
}

CHECKPOINT_SCHEMA: dict[str, pl.DataType] = {
    "project": pl.String(),
    "feature": pl.String(),
    "state": pl.String(),
    "stored": pl.Int64(),
    "run_id": pl.String(),
    "recorded_at": c.TIMESTAMP,
}


@dataclass
class RunRecord:
    """What the history says about one run."""

    run_id: str
    project: str
    status: str
    started_at: datetime
    selection: Sequence[str]
    options: Mapping[str, Any]
    features: Sequence[Mapping[str, Any]] = ()
    finished_at: datetime | None = None
    written: int = 0
    deleted: int = 0
    pid: int | None = None
    host: str | None = None

    def row(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {
                    "run_id": self.run_id,
                    "project": self.project,
                    "status": self.status,
                    "started_at": self.started_at,
                    "finished_at": self.finished_at,
                    "recorded_at": now_utc(),
                    "selection": json.dumps(list(self.selection)),
                    "options": json.dumps(dict(self.options), default=str),
                    "features": json.dumps(list(self.features), default=str),
                    "written": self.written,
                    "deleted": self.deleted,
                    "pid": self.pid if self.pid is not None else os.getpid(),
                    "host": self.host or socket.gethostname(),
                    "mxd_version": __version__,
                }
            ],
            schema=RUN_SCHEMA,
        )

    def to_json(self) -> dict[str, Any]:
        seconds = (
            (self.finished_at - self.started_at).total_seconds()
            if self.finished_at is not None
            else None
        )
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "seconds": None if seconds is None else round(seconds, 3),
            "selection": list(self.selection),
            "options": dict(self.options),
            "written": self.written,
            "deleted": self.deleted,
            "features": list(self.features),
            "pid": self.pid,
            "host": self.host,
        }


def _latest(
    store: MetadataStore,
    table: tuple[str, ...],
    by: str,
    project: str | None,
    status: str | None = None,
) -> pl.DataFrame | None:
    """The latest row (by ``recorded_at``) of each ``by`` value of a system table, picked
    in the store's engine; ``status``: only those whose latest row has it."""
    ref = store.ref(table)
    if ref is None:
        return None
    order = exp.Order(expressions=[exp.Ordered(this=col("recorded_at"), desc=True)])
    number = exp.Window(this=exp.RowNumber(), partition_by=[col(by)], order=order)
    ranked = exp.select("*", alias(number, "__mxd_n")).from_(ref.copy())
    if project is not None:
        ranked = ranked.where(col("project").eq(lit(project)), copy=False)
    latest = exp.select("*").from_(ranked.subquery("__mxd_r", copy=False))
    latest = latest.where(col("__mxd_n").eq(1), copy=False)
    if status is not None:
        latest = latest.where(col("status").eq(lit(status)), copy=False)
    return store.engine().frame(latest).drop("__mxd_n")


def history(
    store: MetadataStore, project: str | None = None, *, status: str | None = None
) -> list[RunRecord]:
    """Every recorded run, newest first (the latest row of each run id); ``status``:
    only the runs in that state."""
    found = _latest(store, RUNS, "run_id", project, status)
    if found is None:
        return []
    rows = found.sort("started_at", descending=True)
    return [
        RunRecord(
            run_id=r["run_id"],
            project=r["project"],
            status=r["status"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            selection=json.loads(r["selection"]),
            options=json.loads(r["options"]),
            features=json.loads(r["features"]),
            written=r["written"],
            deleted=r["deleted"],
            pid=r["pid"],
            host=r["host"],
        )
        for r in rows.iter_rows(named=True)
    ]


def close_dead_runs(store: MetadataStore, project: str) -> list[str]:
    """Mark runs left ``running`` as ``interrupted`` (call while holding the writer lock,
    when no other run can be alive). Returns their ids."""
    dead = history(store, project, status="running")
    for record in dead:
        record.status = "interrupted"
        store.append(RUNS, record.row())
    return [r.run_id for r in dead]


class Checkpoints:
    """The last complete state of each feature, by feature key string; ``fallbacks``:
    the fallback stores, whose checkpoints settle the features they serve."""

    def __init__(
        self, store: MetadataStore, project: str, fallbacks: Sequence[MetadataStore] = ()
    ) -> None:
        self.store = store
        self.project = project
        self.fallbacks = {f.name: f for f in fallbacks}
        self._loaded: dict[str, tuple[str, int]] | None = None
        self._theirs: dict[str, Checkpoints] = {}

    def holds(self, feature: str, state: str | None) -> int | None:
        """The samples stored at the feature's checkpoint when it holds for ``state`` —
        nothing the feature depends on moved since — else None. A feature served by a
        fallback store holds when that store's own checkpoint does, as it saw the state
        (its own table's mark where ours names it as ``served``)."""
        if state is None:
            return None
        saved = self.get(feature)
        if saved is not None and saved[0] == state:
            return saved[1]
        marks = json.loads(state)
        served = marks.pop("served", None)
        if served is None or served[0] not in self.fallbacks:
            return None
        marks["own"] = served[1]
        if served[0] not in self._theirs:
            self._theirs[served[0]] = Checkpoints(self.fallbacks[served[0]], self.project)
        theirs = self._theirs[served[0]].get(feature)
        if theirs is not None and theirs[0] == json.dumps(marks, sort_keys=True):
            return theirs[1]
        return None

    def get(self, feature: str) -> tuple[str, int] | None:
        """(state, stored count) of the feature's last complete run, or None."""
        if self._loaded is None:
            self._loaded = {}
            rows = _latest(self.store, CHECKPOINTS, "feature", self.project)
            for r in [] if rows is None else rows.iter_rows(named=True):
                self._loaded[r["feature"]] = (r["state"], r["stored"])
        return self._loaded.get(feature)

    def put(self, feature: str, state: str, stored: int, run_id: str) -> None:
        row = {
            "project": self.project,
            "feature": feature,
            "state": state,
            "stored": stored,
            "run_id": run_id,
            "recorded_at": now_utc(),
        }
        self.store.append(CHECKPOINTS, pl.DataFrame([row], schema=CHECKPOINT_SCHEMA))
        if self._loaded is not None:
            self._loaded[feature] = (state, stored)
