"""A branch store over a fully built store (``fallback_stores``): what it serves, what it
computes, and that the store it falls back to is never touched.

Every test runs on DuckDB and Delta: ``qs`` is the quickstart materialized into ``dev`` by
its real assets; its ``branch`` store (of the same kind) falls back to ``dev``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mxd_cli import api
from tests.cli.test_definitions import mxd
from tests.populated import BACKENDS, digest, fresh_quickstart

FEATURES = ["shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking"]


@pytest.fixture(params=BACKENDS)
def qs(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = fresh_quickstart(tmp_path / "qs", request.param)
    result = mxd("materialize", cwd=root)
    assert result.exit_code == 0, result.output
    return root


def run(root: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = mxd("-s", "branch", "--json", *args, cwd=root)
    return result.exit_code, json.loads(result.stdout)


def by_feature(report: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {f["feature"]: f for f in report["features"]}


def dev_files(root: Path) -> dict[str, str]:
    return {k: v for k, v in digest(root / ".mxd").items() if "branch" not in k}


def edit_price(root: Path) -> None:
    csv = root / "data" / "products.csv"
    csv.write_text(csv.read_text().replace(",119.00,", ",109.00,"))


def test_a_fresh_branch_is_served_by_its_fallback_with_nothing_pending(qs: Path) -> None:
    before = dev_files(qs)
    code, report = run(qs, "status", "--exit-code")
    assert code == 0, report
    features = by_feature(report)
    assert list(features) == FEATURES
    for f in features.values():
        assert (f["status"], f["source"], f["stored"]) == ("up_to_date", "dev", 8), f
        assert (f["new"], f["stale"], f["orphaned"]) == (0, 0, 0)
        assert f["causes"] == ["served by fallback store 'dev'"]
    assert report["pending"] is False

    code, done = run(qs, "materialize")
    assert code == 0, done
    for f in done["features"]:
        assert (f["status"], f["written"], f["adopted"], f["source"]) == (
            "up_to_date",
            0,
            0,
            "dev",
        ), f
    # The branch holds no feature table: Metaxy reading it falls back per feature too.
    tables = api.content(api.Project.load(cwd=qs), store="branch")["features"]
    assert {t["feature"]: t["samples"] for t in tables} == dict.fromkeys(FEATURES, 8)
    assert dev_files(qs) == before


def test_a_branch_computes_only_what_differs_from_its_fallback(qs: Path) -> None:
    before = dev_files(qs)
    edit_price(qs)
    code, report = run(qs, "status")
    features = by_feature(report)
    assert features["shop/products"]["stale"] == 1
    assert features["shop/products"]["causes"][0] == (
        "served by fallback store 'dev': a run takes its current rows here first"
    )
    for name in ("shop/reviews", "shop/text_stats"):
        assert (features[name]["status"], features[name]["source"]) == ("up_to_date", "dev")

    code, dry = run(qs, "materialize", "--dry-run")
    assert code == 0, dry
    code, done = run(qs, "materialize")
    assert code == 0, done
    counts = ("status", "new", "stale", "orphaned", "written", "deleted", "adopted", "source")
    assert [{k: f[k] for k in counts} for f in dry["features"]] == [
        {k: f[k] for k in counts} for f in done["features"]
    ]
    result = by_feature(done)
    for name in ("shop/products", "shop/pricing", "shop/ranking"):
        f = result[name]
        assert (f["status"], f["stale"], f["written"], f["adopted"]) == ("success", 1, 1, 8), f
    for name in ("shop/reviews", "shop/text_stats"):
        assert (result[name]["status"], result[name]["adopted"]) == ("up_to_date", 0)

    # The branch now holds the three features it changed (complete tables), and the
    # fallback still serves the two it did not; dev itself was not touched.
    code, after = run(qs, "status", "--exit-code")
    assert code == 0, after
    sources = {f["feature"]: f["source"] for f in after["features"]}
    assert sources == {
        "shop/products": "branch",
        "shop/reviews": "dev",
        "shop/pricing": "branch",
        "shop/text_stats": "dev",
        "shop/ranking": "branch",
    }
    assert all(f["stored"] == 8 for f in after["features"])
    assert dev_files(qs) == before
    dev = by_feature(json.loads(mxd("--json", "status", cwd=qs).stdout))
    assert dev["shop/products"]["stale"] == 1  # dev still has the old price

    code, again = run(qs, "materialize")
    assert all(f["status"] == "up_to_date" for f in again["features"])


def test_a_fresh_branch_is_settled_by_its_fallbacks_checkpoints(
    qs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing moved since dev's last complete run: no feature is resolved, no row read.
    from mxd_cli.engine import increment

    calls: list[object] = []
    real = increment.resolve
    monkeypatch.setattr(increment, "resolve", lambda *a, **k: calls.append(a) or real(*a, **k))
    project = api.Project.load(cwd=qs)
    report = api.status(project, store="branch")
    assert [f["status"] for f in report["features"]] == ["up_to_date"] * 5
    assert calls == []
    edit_price(qs)
    report = api.status(project, store="branch")
    assert by_feature(report)["shop/products"]["stale"] == 1
    assert len(calls) >= 1


def test_observe_on_a_branch_says_where_the_rows_come_from(qs: Path) -> None:
    code, seen = run(qs, "observe")
    assert code == 0, seen
    assert {f["source"] for f in seen["features"]} == {"dev"}
    assert all(f["samples"] == 8 for f in seen["features"])
    dev = json.loads(mxd("--json", "observe", cwd=qs).stdout)
    # The same rows, so the same content fingerprints.
    assert [f["fingerprint"] for f in seen["features"]] == [
        f["fingerprint"] for f in dev["features"]
    ]


def test_a_delete_on_a_branch_takes_the_served_rows_first(qs: Path) -> None:
    before = dev_files(qs)
    args = ("delete", "shop/products", "--filter", "price > 100", "--cascade")
    code, dry = run(qs, *args, "--dry-run")
    assert code == 0, dry
    code, done = run(qs, *args, "--yes")
    assert code == 0, done
    for report in (dry, done):
        matched = {f["feature"]: (f["matched"], f["adopted"]) for f in report["features"]}
        assert matched == {
            "shop/products": (3, 8),
            "shop/pricing": (3, 8),
            "shop/text_stats": (3, 8),
            "shop/ranking": (3, 8),
        }
    assert [f["deleted"] for f in done["features"]] == [3, 3, 3, 3]
    assert dev_files(qs) == before  # the fallback keeps every row
    code, after = run(qs, "status")
    features = by_feature(after)
    assert (features["shop/products"]["source"], features["shop/products"]["stored"]) == (
        "branch",
        5,
    )
    assert features["shop/products"]["new"] == 3  # the asset still returns them
    assert features["shop/reviews"]["source"] == "dev"
    # A filter that matches nothing takes nothing into the branch.
    code, none = run(qs, "delete", "shop/reviews", "--filter", "rating > 99", "--yes")
    assert code == 0, none
    assert none["features"][0]["matched"] == 0 and none["features"][0]["adopted"] == 0
    code, after = run(qs, "status")
    assert by_feature(after)["shop/reviews"]["source"] == "dev"


def test_a_chain_of_fallbacks_is_followed_to_the_store_that_holds_a_feature(qs: Path) -> None:
    # branch -> staging -> dev: staging holds nothing yet, so dev serves everything.
    config = qs / "metaxy.toml"
    text = config.read_text()
    kind = "delta" if 'type = "delta"' in text else "duckdb"
    option = "root_path" if kind == "delta" else "database"
    text = text.replace('fallback_stores = ["dev"]', 'fallback_stores = ["staging"]')
    text += (
        f'\n[stores.staging]\ntype = "{kind}"\n\n[stores.staging.config]\n'
        f'{option} = ".mxd/staging"\nfallback_stores = ["dev"]\n'
    )
    config.write_text(text)
    code, report = run(qs, "status", "--exit-code")
    assert code == 0, report
    assert {f["source"] for f in report["features"]} == {"dev"}
    edit_price(qs)
    code, done = run(qs, "materialize", "shop/products")
    assert by_feature(done)["shop/products"]["adopted"] == 8
    code, report = run(qs, "status")
    assert by_feature(report)["shop/products"]["source"] == "branch"
    assert by_feature(report)["shop/pricing"]["stale"] == 1  # (its upstream moved here)
    assert by_feature(report)["shop/reviews"]["source"] == "dev"
    assert not (qs / ".mxd" / "staging").exists()  # a fallback is only read


def test_the_status_table_of_a_branch_has_a_source_column(qs: Path) -> None:
    table = mxd("-s", "branch", "status", cwd=qs).stdout
    header = next(line for line in table.splitlines() if "feature" in line)
    assert "source" in header
    assert "served by fallback store" not in table  # (the column says it)
    assert "source" not in next(
        line for line in mxd("status", cwd=qs).stdout.splitlines() if "feature" in line
    )
