from __future__ import annotations

from mxd_cli.cli import main

main()
