"""Lineage example: the most common shape of ML feature work.

    documents ──(1:N)──> chunks ──(1:1)──> embeddings ──(N:1)──> doc_stats

``chunks`` splits each document into sentences (an expansion: one parent, several
children keyed by ``doc_id, chunk_idx``); ``embeddings`` computes a vector per chunk;
``doc_stats`` aggregates every chunk of a document into one row (its asset receives, per
chunk of work, all the chunk rows of each document with their columns).
"""

from __future__ import annotations

import polars as pl

import mxd_cli as mx


class Documents(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="docs/documents",
        id_columns=["doc_id"],
        fields=[
            mx.FieldSpec(key="title", code_version="1"),
            mx.FieldSpec(key="text", code_version="1"),
            mx.FieldSpec(key="lang", code_version="1"),
        ],
        description="Source documents, one row each.",
    ),
):
    title: str
    text: str
    lang: str


class Chunks(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="docs/chunks",
        id_columns=["doc_id", "chunk_idx"],
        deps=[
            mx.FeatureDep(
                feature=Documents, select=["text", "lang"], lineage=mx.expansion(on=["doc_id"])
            )
        ],
        fields=[mx.FieldSpec(key="sentence", code_version="1")],
        description="Sentences of each document (1:N).",
    ),
):
    sentence: str


class Embeddings(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="docs/embeddings",
        id_columns=["doc_id", "chunk_idx"],
        deps=[mx.FeatureDep(feature=Chunks)],
        fields=[mx.FieldSpec(key="vector", code_version="1")],
        description="A (toy) embedding per chunk.",
    ),
):
    vector: list[float]


class DocStats(
    mx.BaseFeature,
    spec=mx.FeatureSpec(
        key="docs/doc_stats",
        id_columns=["doc_id"],
        deps=[mx.FeatureDep(feature=Embeddings, lineage=mx.aggregation(on=["doc_id"]))],
        fields=[mx.FieldSpec(key="stats", code_version="1")],
        description="Per-document statistics over its chunks (N:1).",
    ),
):
    n_chunks: int
    mean_norm: float


@mx.asset(
    Documents,
    source_version=lambda ctx: mx.file_version(ctx.project_dir / "data" / "documents.csv"),
)
def documents(ctx: mx.AssetContext) -> pl.DataFrame:
    return pl.read_csv(ctx.project_dir / "data" / "documents.csv")


@mx.asset(Chunks)
def chunks(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    # One row per sentence of each document.
    return (
        rows.select("doc_id", sentence=pl.col("text").str.split(". "))
        .explode("sentence")
        .with_columns(
            pl.col("sentence").str.strip_chars(" ."),
            chunk_idx=pl.int_range(pl.len()).over("doc_id").cast(pl.Int64),
        )
        .select("doc_id", "chunk_idx", "sentence")
    )


@mx.asset(Embeddings)
def embeddings(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    # A toy embedding: character statistics of the sentence.
    words = pl.col("sentence").str.split(" ").list.len().cast(pl.Float64)
    chars = pl.col("sentence").str.len_chars().cast(pl.Float64)
    return rows.select("doc_id", "chunk_idx", vector=pl.concat_list(words, chars / 10))


@mx.asset(DocStats)
def doc_stats(ctx: mx.AssetContext, rows: pl.DataFrame) -> pl.DataFrame:
    # `rows`: every embedding row of each document in this chunk of work.
    norm = (pl.col("vector").list.get(0) ** 2 + pl.col("vector").list.get(1) ** 2).sqrt()
    return rows.group_by("doc_id").agg(
        n_chunks=pl.len().cast(pl.Int64), mean_norm=norm.mean().round(3)
    )
