"""What a run is asked to do and what it did: options, per-feature results, the run.

These are the shapes of ``mxd materialize --json`` (SPEC §4) and of the run history.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mxd_cli.store.base import now_utc


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides the project and the store."""

    selectors: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    partition: tuple[str, str] | None = None
    full: bool = False
    dry_run: bool = False
    fail_fast: bool = False
    chunk_size: int | None = None
    keep_orphans: bool = False
    max_orphan_fraction: float | None = None  # None: [ext.mxd] max_orphan_fraction (0.5)
    allow_mass_delete: bool = False

    @property
    def restricted(self) -> bool:
        """Only some samples are considered: the run says nothing about the others."""
        return bool(self.filters or self.keys or self.sample is not None or self.partition)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False, (), 0)}


@dataclass
class FeatureResult:
    """How one feature fared in a run (the materialize JSON shape, per feature)."""

    feature: str
    status: str = "pending"  # success | failed | skipped | up_to_date | interrupted
    new: int = 0
    stale: int = 0
    orphaned: int = 0
    unchanged: int = 0
    written: int = 0  # samples whose rows were written
    deleted: int = 0  # samples soft-deleted (orphans)
    rows: int = 0  # physical rows written (an expansion writes several per sample)
    source: str | None = None  # the fallback store serving the feature (None: the store's)
    adopted: int = 0  # rows taken from that fallback before changing the feature here
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # ctx.add_metadata (issue 13)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class RunResult:
    run_id: str
    status: str  # success | failed | partial | interrupted
    dry_run: bool
    store: str
    started_at: datetime
    features: list[FeatureResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(f.written for f in self.features)

    @property
    def deleted(self) -> int:
        return sum(f.deleted for f in self.features)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "store": self.store,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "written": self.written,
            "deleted": self.deleted,
            "rows": self.rows,
            "features": [f.to_json() for f in self.features],
        }


class Listener(Protocol):
    """Progress hooks (the CLI draws bars from them); every call comes from the run's thread."""

    def feature_started(self, feature: str, total: int) -> None: ...
    def rows_done(self, feature: str, rows: int) -> None: ...
    def feature_finished(self, result: FeatureResult) -> None: ...


class Quiet:
    """A listener that shows nothing."""

    def feature_started(self, feature: str, total: int) -> None:
        pass

    def rows_done(self, feature: str, rows: int) -> None:
        pass

    def feature_finished(self, result: FeatureResult) -> None:
        pass


def new_run_id() -> str:
    return now_utc().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def overall_status(features: Sequence[FeatureResult]) -> str:
    statuses = {f.status for f in features}
    if "interrupted" in statuses:
        return "interrupted"
    if "failed" not in statuses:
        return "success"
    return "partial" if statuses & {"success", "up_to_date"} else "failed"
