"""The core library stays free of the CLI's dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_import_mxd_cli_loads_neither_typer_nor_rich_nor_dagster() -> None:
    modules = _loaded_after("import mxd_cli, mxd_cli.api")
    assert "mxd_cli" in modules
    assert not {m for m in modules if m.split(".")[0] in {"typer", "rich", "click", "dagster"}}


def test_the_cli_does_not_load_dagster() -> None:
    modules = _loaded_after("import mxd_cli.cli")
    assert "mxd_cli.cli" in modules
    assert not {m for m in modules if m.split(".")[0] == "dagster"}


def test_rich_is_imported_only_by_console_and_typer_only_by_cli() -> None:
    for path in (SRC / "mxd_cli").rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(SRC / "mxd_cli").as_posix()
        if "import rich" in text or "from rich" in text:
            assert rel == "console.py", rel
        if "import typer" in text or "from typer" in text:
            assert rel.startswith("cli/"), rel
        if "import dagster" in text or "from dagster" in text:
            assert rel == "dagster.py", rel
