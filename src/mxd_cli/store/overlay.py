"""A store that keeps writes in memory on top of a read-only store: how dry runs work.

``materialize --dry-run`` runs the very same code as a real run against an overlay. Every
write lands in memory, so downstream features see their upstreams' would-be rows and
report exact counts, while the real store is opened read-only and never touched.
"""

from __future__ import annotations

import polars as pl

from mxd_cli.store.base import MetadataStore, Table


class OverlayStore(MetadataStore):
    """Reads ``base`` plus what was written here; writes never leave memory."""

    def __init__(self, base: MetadataStore) -> None:
        super().__init__(base.name, read_only=False)
        self.kind = base.kind
        self.base = base
        self._appended: dict[Table, list[pl.DataFrame]] = {}
        self._replaced: dict[Table, pl.DataFrame] = {}

    def location(self) -> str:
        return f"{self.base.location()} (dry run: in memory)"

    def physical_name(self, table: Table) -> str:
        return self.base.physical_name(table)

    def tables(self) -> set[str]:
        mine = {self.physical_name(t) for t in [*self._appended, *self._replaced]}
        return self.base.tables() | mine

    def has(self, table: Table) -> bool:
        return table in self._appended or table in self._replaced or self.base.has(table)

    def scan(self, table: Table) -> pl.LazyFrame | None:
        parts: list[pl.LazyFrame] = []
        if table in self._replaced:
            parts.append(self._replaced[table].lazy())
        else:
            below = self.base.scan(table)
            if below is not None:
                parts.append(below)
        parts += [f.lazy() for f in self._appended.get(table, [])]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")

    def append(self, table: Table, frame: pl.DataFrame) -> None:
        self._appended.setdefault(table, []).append(frame)

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        self._appended.pop(table, None)
        self._replaced[table] = frame

    def write_mark(self, table: Table) -> str | None:
        if table in self._appended or table in self._replaced:
            return None  # changed in memory: never matches a stored checkpoint
        return self.base.write_mark(table)

    def close(self) -> None:
        self.base.close()
