"""Copy the golden vectors the tests need from ``../shared/golden`` into ``tests/data/golden``.

The suite reads only the copy, so a fresh clone runs without ``../shared``. Run this when
the shared vectors change; ``--check`` only compares (exit 1 on any difference)::

    python tests/data/sync_golden.py          # refresh the copy
    python tests/data/sync_golden.py --check  # is the copy identical to ../shared/golden?
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COPY = HERE / "golden"
SOURCE = HERE.parents[2] / "shared" / "golden"


def differences(source: Path = SOURCE, copy: Path = COPY) -> list[str]:
    """Relative paths that differ between the two trees (missing on either side included)."""
    found: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(prefix + name for name in cmp.left_only + cmp.right_only + cmp.funny_files)
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        found.extend(prefix + name for name in mismatch + errors)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(source, copy), "")
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on changes")
    args = parser.parse_args()
    if not SOURCE.is_dir():
        print(f"no golden vectors at {SOURCE}", file=sys.stderr)
        return 2
    if args.check:
        changed = differences()
        for path in changed:
            print(f"differs: {path}")
        return 1 if changed else 0
    if COPY.exists():
        shutil.rmtree(COPY)
    shutil.copytree(SOURCE, COPY)
    for path in [COPY, *COPY.rglob("*")]:  # the shared tree is read-only; the copy is not
        path.chmod(0o755 if path.is_dir() else 0o644)
    print(f"copied {SOURCE} -> {COPY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
