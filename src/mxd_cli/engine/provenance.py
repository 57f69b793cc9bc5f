"""Sample-level provenance and data versions (Metaxy's recipes 9-12), as Polars expressions.

- Downstream field ``f``: ``T(h("f|code_version|parent1|dv(parent1)|..."))`` with parents in
  fully-qualified-string order and ``dv`` the upstream row's data version of that field
  (empty for a missing optional parent); built in SQL by :mod:`mxd_cli.engine.plan`.
- Sample provenance: ``T(h(join("|", per-field values sorted by struct key)))``.
- Root features: provenance per field comes with the samples; when it does not, mxd
  derives it from the sample's columns (see :func:`derive_root_provenance`).
- Data versions equal provenance unless the rows carry their own
  ``metaxy_data_version_by_field`` (early cut-off).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from mxd_cli.engine.hashing import combine_expr, hash_expr, joined
from mxd_cli.errors import AssetError
from mxd_cli.graph import FeatureNode
from mxd_cli.store import columns as c


def sorted_struct_keys(node: FeatureNode) -> list[str]:
    return sorted(f.key.struct_key for f in node.spec.fields)


def combined(struct_column: str, node: FeatureNode, algorithm: str, length: int) -> pl.Expr:
    """Recipe 10 over the declared fields of ``struct_column`` (extra struct keys ignored)."""
    values = [pl.col(struct_column).struct.field(k) for k in sorted_struct_keys(node)]
    return combine_expr(values, algorithm, length)


def user_columns(frame_columns: Sequence[str], id_columns: Sequence[str]) -> list[str]:
    ids = set(id_columns)
    return sorted(n for n in frame_columns if n not in ids and not c.is_system_column(n))


def _column_text(name: str) -> pl.Expr:
    # "name=value", or just "name" for null, so null and "" hash differently.
    value = pl.col(name).cast(pl.String)
    return pl.when(value.is_null()).then(pl.lit(name)).otherwise(pl.lit(f"{name}=") + value)


def derive_root_provenance(
    node: FeatureNode, columns: Sequence[str], algorithm: str, length: int
) -> pl.Expr:
    """Per-field provenance of root samples that came without ``metaxy_provenance_by_field``.

    A field whose struct key names a column hashes ``"<column>=<value>"``; any other field
    hashes all user columns (non-id, non-system, by name) as ``"a=1|b=x|..."``. Values are
    rendered with Polars' cast to String; a null renders as the bare column name.
    """
    users = user_columns(columns, node.spec.id_columns)
    present = set(columns)
    fields = []
    for field in node.spec.fields:
        name = field.key.struct_key
        chosen = [name] if name in present and name in users else users
        fields.append(
            hash_expr(joined([_column_text(n) for n in chosen]), algorithm, length).alias(name)
        )
    return pl.struct(fields).alias(c.PROVENANCE_BY_FIELD)


def check_struct_fields(frame: pl.DataFrame | pl.LazyFrame, column: str, node: FeatureNode) -> None:
    """Every declared field must be in a user-supplied ``*_by_field`` struct."""
    dtype = frame.collect_schema()[column]
    if not isinstance(dtype, pl.Struct):
        raise AssetError(
            f"{node.key}: column {column!r} must be a struct of strings (one per field), "
            f"got {dtype}"
        )
    have = {f.name for f in dtype.fields}
    missing = [k for k in sorted_struct_keys(node) if k not in have]
    if missing:
        raise AssetError(
            f"{node.key}: column {column!r} lacks field(s) {', '.join(missing)}",
            hint=f"give one string per declared field: {', '.join(sorted_struct_keys(node))}",
        )


def with_root_provenance(
    samples: pl.LazyFrame, node: FeatureNode, algorithm: str, length: int
) -> pl.LazyFrame:
    """Root samples with provenance and data-version columns (recipes 11 and 12)."""
    schema = samples.collect_schema()
    if c.PROVENANCE_BY_FIELD in schema:
        check_struct_fields(samples, c.PROVENANCE_BY_FIELD, node)
        frame = samples
    else:
        frame = samples.with_columns(
            derive_root_provenance(node, list(schema.names()), algorithm, length)
        )
    frame = frame.with_columns(
        combined(c.PROVENANCE_BY_FIELD, node, algorithm, length).alias(c.PROVENANCE)
    )
    return with_data_versions(frame, node, algorithm, length)


def with_data_versions(
    frame: pl.LazyFrame, node: FeatureNode, algorithm: str, length: int
) -> pl.LazyFrame:
    """Fill ``metaxy_data_version_by_field`` / ``metaxy_data_version`` (recipe 12)."""
    schema = frame.collect_schema()
    if c.DATA_VERSION_BY_FIELD in schema and schema[c.DATA_VERSION_BY_FIELD] != pl.Null:
        check_struct_fields(frame, c.DATA_VERSION_BY_FIELD, node)
        frame = frame.with_columns(
            pl.coalesce(pl.col(c.DATA_VERSION_BY_FIELD), pl.col(c.PROVENANCE_BY_FIELD)).alias(
                c.DATA_VERSION_BY_FIELD
            )
        )
        return frame.with_columns(
            combined(c.DATA_VERSION_BY_FIELD, node, algorithm, length).alias(c.DATA_VERSION)
        )
    return frame.with_columns(
        pl.col(c.PROVENANCE_BY_FIELD).alias(c.DATA_VERSION_BY_FIELD),
        pl.col(c.PROVENANCE).alias(c.DATA_VERSION),
    )
