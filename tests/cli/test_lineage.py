"""The lineage example (documents -1:N-> chunks -1:1-> embeddings -N:1-> doc_stats) through
the CLI, on both backends: N:1 assets see their groups, dry runs are exact across the
expansion, and every row restriction is a consistent slice of the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.conftest import EXAMPLES
from tests.populated import BACKENDS

FEATURES = ["docs/documents", "docs/chunks", "docs/embeddings", "docs/doc_stats"]


@pytest.fixture(params=BACKENDS)
def lineage(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    dest = tmp_path / "lineage"
    shutil.copytree(EXAMPLES / "lineage", dest, ignore=shutil.ignore_patterns(".mxd"))
    if request.param == "delta":
        config = dest / "metaxy.toml"
        config.write_text(
            config.read_text()
            .replace('type = "duckdb"', 'type = "delta"')
            .replace('database = ".mxd/dev.duckdb"', 'root_path = ".mxd/delta"')
        )
    return dest


def run(root: Path, *args: str, code: int = 0) -> dict:  # type: ignore[type-arg]
    result = mxd("--json", *args, cwd=root)
    assert result.exit_code == code, result.output
    found: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return found


def written(report: dict, unit: str = "written") -> dict[str, int]:  # type: ignore[type-arg]
    """Per feature: samples written (``unit="rows"``: physical rows)."""
    return {f["feature"]: f[unit] for f in report["features"]}


def rows(root: Path, feature: str) -> pl.DataFrame:
    found = api.read(api.Project.load(cwd=root), feature)
    return found.sort([c for c in ("doc_id", "chunk_idx") if c in found.columns])


def sentences(root: Path) -> dict[str, int]:
    docs = pl.read_csv(root / "data" / "documents.csv")
    return {d: len(t.split(". ")) for d, t in zip(docs["doc_id"], docs["text"], strict=True)}


def test_aggregation_asset_sees_every_member_row(lineage: Path) -> None:
    report = run(lineage, "materialize")
    counts = sentences(lineage)
    chunks = sum(counts.values())
    assert written(report, "rows") == {
        "docs/documents": len(counts),
        "docs/chunks": chunks,
        "docs/embeddings": chunks,
        "docs/doc_stats": len(counts),
    }
    stats = rows(lineage, "docs/doc_stats")
    assert dict(zip(stats["doc_id"], stats["n_chunks"], strict=True)) == counts
    again = run(lineage, "materialize")
    assert sum(written(again).values()) == 0
    assert {f["status"] for f in again["features"]} == {"up_to_date"}


def test_dry_run_predicts_the_real_run_across_the_expansion(lineage: Path) -> None:
    dry = run(lineage, "materialize", "--dry-run")
    assert not (lineage / ".mxd").exists() or run(lineage, "status")["pending"]
    real = run(lineage, "materialize")
    assert written(dry) == written(real)
    assert written(dry, "rows") == written(real, "rows")
    # One more sentence in d2: its chunks change, so do its embeddings and its stats.
    csv = lineage / "data" / "documents.csv"
    csv.write_text(csv.read_text().replace("It flows north.", "It flows north. Boats sail."))
    dry = run(lineage, "materialize", "--dry-run")
    real = run(lineage, "materialize")
    assert written(dry) == written(real) == dict(zip(FEATURES, (1, 1, 3, 1), strict=True))
    assert written(dry, "rows") == written(real, "rows")
    assert written(real, "rows") == dict(zip(FEATURES, (1, 3, 3, 1), strict=True))
    stats = rows(lineage, "docs/doc_stats")
    assert dict(zip(stats["doc_id"], stats["n_chunks"], strict=True))["d2"] == 3


def test_partition_follows_lineage_to_every_feature(lineage: Path) -> None:
    report = run(lineage, "materialize", "--partition", "lang=de")
    assert {f["status"] for f in report["features"]} == {"success"}
    for feature in FEATURES:
        assert set(rows(lineage, feature)["doc_id"]) == {"d4"}, feature
    rest = run(lineage, "materialize")
    assert written(rest)["docs/documents"] == len(sentences(lineage)) - 1


def test_filter_on_a_parent_column_restricts_every_feature(lineage: Path) -> None:
    run(lineage, "materialize", "--filter", "lang = 'en'")
    english = {"d1", "d2", "d3", "d5"}
    for feature in FEATURES:
        assert set(rows(lineage, feature)["doc_id"]) == english, feature
    status = run(lineage, "status", "--filter", "lang = 'de'")
    by = {f["feature"]: f for f in status["features"]}
    assert by["docs/documents"]["status"] == "missing" and by["docs/documents"]["new"] == 1
    assert "upstream docs/documents is not up to date" in by["docs/chunks"]["causes"]
    assert all(f["stored"] == 0 for f in status["features"])  # the slice holds nothing yet


def test_keys_name_one_sample_by_several_id_columns(lineage: Path) -> None:
    run(lineage, "materialize")
    csv = lineage / "data" / "documents.csv"
    csv.write_text(csv.read_text().replace("Snow stays long.", "Snow stays longer."))
    report = run(lineage, "materialize", "--keys", "doc_id=d1,chunk_idx=1")
    by = {f["feature"]: f for f in report["features"]}
    assert by["docs/documents"]["status"] == "skipped"  # no chunk_idx, nothing to follow
    # The expansion is restricted to the document of the stored chunk the key names (its
    # sample), whole; the document itself was not rewritten, so nothing moved below it.
    assert by["docs/chunks"]["status"] == "up_to_date"
    assert by["docs/embeddings"]["stale"] == 0  # its upstream chunk is unchanged yet
    args = ("materialize", "--keys", "doc_id=d1,chunk_idx=1", "--full")
    dry = run(lineage, *args, "--dry-run")
    done = run(lineage, *args)
    assert (
        written(dry)
        == written(done)
        == {
            "docs/documents": 0,
            "docs/chunks": 1,  # document d1, all three of its chunks
            "docs/embeddings": 1,  # chunk (d1, 1) alone
            "docs/doc_stats": 1,  # d1's group
        }
    )
    assert written(dry, "rows") == written(done, "rows")
    assert written(done, "rows")["docs/chunks"] == 3
    bare = run(lineage, "materialize", "--keys", "d1")
    assert written(bare) == dict(zip(FEATURES, (1, 1, 3, 1), strict=True))
    assert written(bare, "rows") == dict(zip(FEATURES, (1, 3, 3, 1), strict=True))


def test_sample_is_one_consistent_slice(lineage: Path) -> None:
    dry = run(lineage, "materialize", "--sample", "2", "--seed", "7", "--dry-run")
    report = run(lineage, "materialize", "--sample", "2", "--seed", "7")
    assert written(dry) == written(report)
    assert written(dry, "rows") == written(report, "rows")
    docs = set(rows(lineage, "docs/documents")["doc_id"])
    assert len(docs) == 2
    counts = sentences(lineage)
    for feature in FEATURES[1:]:
        assert set(rows(lineage, feature)["doc_id"]) == docs, feature
    assert written(report)["docs/embeddings"] == sum(counts[d] for d in docs)
    again = run(lineage, "materialize", "--sample", "2", "--seed", "7")
    assert sum(written(again).values()) == 0


def test_every_command_counts_samples_and_rows_alike(lineage: Path) -> None:
    """One unit per count: samples are the increment's sample keys (a document, for the
    chunks it expands into), and ``rows`` the physical rows, in every command."""
    counts = sentences(lineage)
    docs, chunks = len(counts), sum(counts.values())
    samples = dict(zip(FEATURES, (docs, docs, chunks, docs), strict=True))
    physical = dict(zip(FEATURES, (docs, chunks, chunks, docs), strict=True))
    report = run(lineage, "materialize")
    assert written(report) == samples and written(report, "rows") == physical
    assert (report["written"], report["rows"]) == (sum(samples.values()), sum(physical.values()))
    status = run(lineage, "status")
    assert written(status, "stored") == samples and written(status, "rows") == physical
    observed = run(lineage, "observe")
    assert written(observed, "samples") == samples and written(observed, "rows") == physical
    again = run(lineage, "observe")  # (content carried over from the last observation)
    assert written(again, "samples") == samples and written(again, "rows") == physical
    d1 = counts["d1"]
    dry = run(lineage, "delete", "docs/documents", "--filter", "doc_id = 'd1'", "--cascade",
              "--dry-run")  # fmt: skip
    expected = dict(zip(FEATURES, (1, 1, d1, 1), strict=True))
    assert written(dry, "matched") == expected
    assert written(dry, "rows") == dict(zip(FEATURES, (1, d1, d1, 1), strict=True))
    gone = run(lineage, "delete", "docs/chunks", "--filter", "doc_id = 'd1'")
    assert (gone["matched"], gone["deleted"], gone["rows"]) == (1, 1, d1)
    status = run(lineage, "status", "docs/chunks")
    assert (status["features"][0]["stored"], status["features"][0]["rows"]) == (
        docs - 1,
        chunks - d1,
    )
    # The next run puts the document's chunks back: one sample, its rows.
    back = run(lineage, "materialize", "docs/chunks")
    assert (back["features"][0]["new"], back["written"], back["rows"]) == (1, 1, d1)


def test_restriction_relating_to_no_selected_feature_is_an_error(lineage: Path) -> None:
    run(lineage, "materialize")
    report = run(lineage, "status", "docs/documents", "--filter", "chunk_idx = 1", code=2)
    assert "chunk_idx" in report["message"]


def test_ctx_read_serves_the_runs_store(lineage: Path) -> None:
    run(lineage, "materialize")
    (lineage / "extra.py").write_text(
        "import polars as pl\n"
        "import mxd_cli as mx\n"
        "from pipeline import Documents\n\n"
        "class Lengths(mx.BaseFeature, spec=mx.FeatureSpec(key='docs/lengths',"
        " id_columns=['doc_id'], deps=[mx.FeatureDep(feature=Documents)],"
        " fields=[mx.FieldSpec(key='n', code_version='1')])):\n"
        "    n: int\n\n"
        "@mx.asset(Lengths)\n"
        "def lengths(ctx, rows):\n"
        "    chunks = ctx.read('docs/chunks', columns=['doc_id', 'sentence'],"
        " filter=\"sentence <> ''\").collect()\n"
        "    n = chunks.group_by('doc_id').agg(n=pl.len().cast(pl.Int64))\n"
        "    return rows.select('doc_id').join(n, on='doc_id', how='left')\n"
    )
    config = lineage / "metaxy.toml"
    config.write_text(config.read_text().replace('["pipeline"]', '["pipeline", "extra"]'))
    run(lineage, "materialize", "docs/lengths")
    found = rows(lineage, "docs/lengths")
    assert dict(zip(found["doc_id"], found["n"], strict=True)) == sentences(lineage)
    config.write_text(config.read_text())
    (lineage / "extra.py").write_text(
        (lineage / "extra.py")
        .read_text()
        .replace("columns=['doc_id', 'sentence']", "columns=['nope']")
        .replace("code_version='1'", "code_version='2'")
    )
    failed = run(lineage, "materialize", "docs/lengths", code=1)
    assert "ctx.read(docs/chunks)" in failed["features"][0]["error"]
    assert "nope" in failed["features"][0]["error"]
