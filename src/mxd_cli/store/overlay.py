"""A store that keeps writes in its engine's temporary tables: how dry runs work.

``materialize --dry-run`` runs the very same code as a real run against an overlay. Every
write lands in a temporary table of the engine (dropped with the connection), and a table
that was written reads as its stored rows plus those, so downstream features see their
upstreams' would-be rows and report exact counts, while the real store is opened
read-only and never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
from sqlglot import exp

from mxd_cli.store.base import MetadataStore, Table
from mxd_cli.store.sql_engine import SqlEngine


class OverlayStore(MetadataStore):
    """Reads ``base`` plus what was written here; writes never leave the engine."""

    def __init__(self, base: MetadataStore) -> None:
        super().__init__(base.name, read_only=False)
        self.kind = base.kind
        self.base = base
        self._added: dict[str, list[exp.Table]] = {}
        self._views: dict[str, exp.Table] = {}
        self._count = 0

    def engine(self) -> SqlEngine:
        return self.base.engine()

    def location(self) -> str:
        return f"{self.base.location()} (dry run: in memory)"

    def physical_name(self, table: Table) -> str:
        return self.base.physical_name(table)

    def tables(self) -> set[str]:
        return self.base.tables() | set(self._added)

    def bind(self, engine: SqlEngine, alias: str) -> Callable[[Table], exp.Table | None]:
        return self.base.bind(engine, alias)

    def ref(self, table: Table) -> exp.Table | None:
        name = self.physical_name(table)
        below = self.base.ref(table)
        added = self._added.get(name)
        if not added:
            return below
        if name not in self._views:
            engine = self.engine()
            parts = ([below] if below is not None else []) + added
            self._count += 1
            view = exp.to_table(f"__mxd_overlay_{self._count}", quoted=True)
            engine.view(view, exp.select("*").from_(engine.union_by_name(parts)))
            self._views[name] = view
        return self._views[name]

    def row_addressable(self, table: Table) -> bool:
        # A table with rows added in the overlay is a view of the union.
        return not self._added.get(self.physical_name(table)) and self.base.row_addressable(table)

    def schema(self, table: Table) -> pa.Schema | None:
        ref = self.ref(table)
        if ref is None:
            return None
        return self.engine().arrow(exp.select("*").from_(ref).limit(0)).schema

    def write_mark(self, table: Table) -> str | None:
        if self.physical_name(table) in self._added:
            return None  # changed in memory: never matches a stored checkpoint
        return self.base.write_mark(table)

    def changed_since(self, table: Table, mark: str) -> exp.Expr | None:
        if self.physical_name(table) in self._added:
            return None
        return self.base.changed_since(table, mark)

    def rows_before(self, table: Table, mark: str) -> exp.Expr | None:
        if self.physical_name(table) in self._added:
            return None
        return self.base.rows_before(table, mark)

    def written_after(self, table: Table, mark: str) -> exp.Expr | None:
        if self.physical_name(table) in self._added:
            return None
        return self.base.written_after(table, mark)

    def later_than_mark(self, table: Table, mark: str) -> exp.Expr | None:
        if self.physical_name(table) in self._added:
            return None
        return self.base.later_than_mark(table, mark)

    def _keep(self, table: Table, temp: exp.Table) -> None:
        name = self.physical_name(table)
        self._added.setdefault(name, []).append(temp)
        self._views.pop(name, None)

    def append(self, table: Table, data: pl.DataFrame | pa.Table) -> int:
        frame = data if isinstance(data, pl.DataFrame) else pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        if frame.height == 0:
            return 0
        engine = self.engine()
        arrow = frame.to_arrow()
        temp = engine.temp_table(arrow.schema, prefix="__mxd_dry")
        engine.insert_arrow(temp, arrow)
        self._keep(table, temp)
        return frame.height

    def append_query(self, table: Table, query: exp.Expr) -> int:
        engine = self.engine()
        temp = engine.materialize(query, prefix="__mxd_dry_q")
        rows = engine.count(temp)
        self._keep(table, temp)
        return rows

    def delete_where(self, table: Table, condition: exp.Expr) -> int:
        raise NotImplementedError("dry runs do not delete rows")

    def replace(self, table: Table, frame: pl.DataFrame) -> None:
        raise NotImplementedError("dry runs do not replace tables")

    def refresh(self, table: Table) -> None:
        self.base.refresh(table)
        self._views.pop(self.physical_name(table), None)

    def lock_path(self) -> Path | None:
        return None

    def close(self) -> None:
        self.base.close()
