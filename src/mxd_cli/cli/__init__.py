"""The `mxd` command line: a thin layer over :mod:`mxd_cli.api`."""

from __future__ import annotations

from mxd_cli.cli import definitions as _definitions  # noqa: F401  (registers commands)
from mxd_cli.cli import delete as _delete  # noqa: F401
from mxd_cli.cli import materialize as _materialize  # noqa: F401
from mxd_cli.cli import observe as _observe  # noqa: F401
from mxd_cli.cli import status as _status  # noqa: F401
from mxd_cli.cli.app import app


def main() -> None:
    app(prog_name="mxd")


__all__ = ["app", "main"]
