"""The quickstart under Dagster: one asset per feature, plus observe and delete jobs.

dagster asset materialize -f examples/quickstart/dagster_defs.py --select '*'
dagster dev -f examples/quickstart/dagster_defs.py          # the UI, if you have it
"""

from __future__ import annotations

from pathlib import Path

from mxd_cli.dagster import build_definitions

defs = build_definitions(Path(__file__).parent / "metaxy.toml")
