"""Quickstart: two root features read from CSV, two features computed from them, and a
ranking score that joins both branches (a diamond).

    products ──> text_stats ──┐
        │                      ├──> ranking
        └──────> pricing <─────┘      (pricing also reads reviews, with a rename)
    reviews ───────┘
"""

from __future__ import annotations

import polars as pl

import mxd_cli as mx


class Products(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="shop/products",
        id_columns=["product_id"],
        # Field keys name CSV columns, so each field's provenance follows its own column.
        fields=[
            mx.FieldSpec(key="title", code_version="1"),
            mx.FieldSpec(key="description", code_version="1"),
            mx.FieldSpec(key="price", code_version="1"),
        ],
        metadata={"tags": ["source"]},
        description="Product catalogue, one row per product.",
    ),
):
    title: str
    description: str
    price: float


class Reviews(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="shop/reviews",
        id_columns=["product_id"],
        fields=[
            mx.FieldSpec(key="rating", code_version="1"),
            mx.FieldSpec(key="review_count", code_version="1"),
        ],
        metadata={"tags": ["source"]},
        description="Review summary per product.",
    ),
):
    rating: float
    review_count: int


class TextStats(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="shop/text_stats",
        id_columns=["product_id"],
        deps=[mx.FeatureDep(feature=Products, select=["title", "description"])],
        fields=[
            # Field-level deps: text statistics do not depend on the price.
            mx.FieldSpec(
                key="words",
                code_version="1",
                deps=[mx.FieldDep(feature=Products, fields=["title", "description"])],
            ),
            mx.FieldSpec(key="title", code_version="1"),  # default mapping: products.title
        ],
        description="Word and character counts of the product text.",
    ),
):
    n_words: int
    title_chars: int


class Pricing(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="shop/pricing",
        id_columns=["product_id"],
        deps=[
            mx.FeatureDep(feature=Products, select=["price"]),
            mx.FeatureDep(feature=Reviews, rename={"rating": "review_rating"}),
        ],
        fields=[
            mx.FieldSpec(
                key="value_score",
                code_version="1",
                deps=[
                    mx.FieldDep(feature=Products, fields=["price"]),
                    mx.FieldDep(feature=Reviews, fields=["rating"]),
                ],
            )
        ],
        description="Rating per unit of price.",
    ),
):
    value_score: float


class Ranking(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="shop/ranking",
        id_columns=["product_id"],
        deps=[mx.FeatureDep(feature=TextStats), mx.FeatureDep(feature=Pricing)],
        fields=[mx.FieldSpec(key="score", code_version="1", deps=mx.ALL)],
        metadata={"tags": ["model"]},
        description="Final ranking score.",
    ),
):
    score: float


# source_version: a cheap token of the CSV (size, mtime). When it, the code and the store
# are unchanged since the last run, the asset is not even called.
@mx.asset(
    Products, source_version=lambda ctx: mx.file_version(ctx.project_dir / "data" / "products.csv")
)
def products(ctx: mx.AssetContext) -> pl.DataFrame:
    return pl.read_csv(ctx.project_dir / "data" / "products.csv")


@mx.asset(
    Reviews, source_version=lambda ctx: mx.file_version(ctx.project_dir / "data" / "reviews.csv")
)
def reviews(ctx: mx.AssetContext) -> pl.DataFrame:
    return pl.read_csv(ctx.project_dir / "data" / "reviews.csv")


@mx.asset(TextStats, chunk_size=4)
def text_stats(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    text = pl.concat_str([pl.col("title"), pl.col("description")], separator=" ")
    return rows.select(
        "product_id",
        n_words=text.str.split(" ").list.len(),
        title_chars=pl.col("title").str.len_chars(),
    )


@mx.asset(Pricing)
def pricing(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        "product_id", value_score=(pl.col("review_rating") * 100 / pl.col("price")).round(3)
    )


@mx.asset(Ranking)
def ranking(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        "product_id",
        score=(pl.col("value_score") + pl.col("n_words") / 10).round(3),
    )
