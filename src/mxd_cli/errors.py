"""The project's error types.

Every error a user can cause derives from :class:`MxdError` and carries a message, an
optional hint and (where known) a location. The CLI has one boundary that turns these into
an exit code and, under ``--json``, ``{"error": code, "message": ..., "hint": ...}``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MxdError(Exception):
    """Root of every error mxd reports to a user."""

    code = "error"
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, location: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.message}"


class ConfigError(MxdError):
    """metaxy.toml / pyproject.toml / environment problems."""

    code = "config_error"


class DefinitionError(MxdError):
    """Problems in feature definitions or the modules that declare them."""

    code = "definition_error"


class UsageError(MxdError):
    """A command was called with arguments that cannot work (unknown selector, bad option)."""

    code = "usage_error"


class FilterError(MxdError):
    """A --filter / FeatureDep.filters expression outside the allowed SQL subset."""

    code = "filter_error"


class StoreError(MxdError):
    """The metadata store cannot be opened, read or written."""

    code = "store_error"
    exit_code = 1


class LockError(StoreError):
    """Another writer holds the store."""

    code = "store_locked"


class MassDeleteError(MxdError):
    """A run would soft-delete more of a feature's samples than allowed."""

    code = "mass_delete"
    exit_code = 1


class Interrupted(MxdError):
    """The command was stopped by Ctrl-C (exit 130) or SIGTERM (exit 143)."""

    code = "interrupted"
    exit_code = 130

    def __init__(self, *, terminated: bool = False) -> None:
        what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        super().__init__(what)
        if terminated:
            self.code = "terminated"
            self.exit_code = 143


class AssetError(MxdError):
    """An asset raised or returned invalid output."""

    code = "asset_error"
    exit_code = 1


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean 'x'?" hint for ``name`` among ``candidates``, or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
