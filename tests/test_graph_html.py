"""``mxd graph --format html`` rendered by a real headless Chromium.

The page is drawn by JavaScript (dagre lays it out), so the checks read the DOM Chromium
rendered, not the HTML mxd wrote. A screenshot is kept in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mxd_cli import api
from mxd_cli.graph_html import STATIC
from tests.cli.test_definitions import mxd

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FEATURES = ["shop/products", "shop/reviews", "shop/pricing", "shop/text_stats", "shop/ranking"]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")


def browse(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Features(HTMLParser):
    """Each rendered ``<g class="feature">``: its data attributes, position and text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str]] = {}
        self.dep_edges = 0
        self.field_edges = 0
        self._open: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "path":
            self.dep_edges += "dep" in classes
            self.field_edges += "field-edge" in classes
        if tag != "g":
            return
        if self._open is not None:
            self._depth += 1
        elif "feature" in classes:
            self._open, self._depth = a["data-feature"], 0
            self.found[self._open] = {
                "status": a["data-status"],
                "x": a["transform"],
                "text": "",
            }

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._open is not None:
            if self._depth == 0:
                self._open = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.found[self._open]["text"] += data + " "


@pytest.fixture
def page(quickstart: Path, tmp_path: Path) -> Path:
    """The quickstart with two features written, then one price changed: every status shows."""
    assert (
        mxd("materialize", "-q", "shop/products", "shop/text_stats", cwd=quickstart).exit_code == 0
    )
    csv = quickstart / "data" / "products.csv"
    csv.write_text(csv.read_text().replace(",119.00,", ",109.00,"))
    result = mxd("graph", "--format", "html", cwd=quickstart)
    assert result.exit_code == 0, result.output
    out = tmp_path / "graph.html"
    out.write_text(result.stdout)
    return out


def test_vendored_dagre_is_the_published_file() -> None:
    text = (STATIC / "vendor" / "dagre.min.js").read_bytes()
    # sha256 of dist/dagre.min.js in the npm tarball of @dagrejs/dagre 3.1.3
    assert hashlib.sha256(text).hexdigest() == (
        "54a503e346f93ca0bb10abe7999587e037262935687aca45eb4e4b0f64bbb578"
    )
    assert "MIT" in (STATIC / "vendor" / "README.md").read_text()
    assert "Permission is hereby granted" in (STATIC / "vendor" / "dagre.LICENSE").read_text()


def test_the_page_loads_nothing_from_elsewhere(page: Path) -> None:
    html = page.read_text()
    for needle in ("<script src", "<link", "@import", "fetch(", "XMLHttpRequest", "import("):
        assert needle not in html, needle
    assert not re.findall(r"url\((?!#)", html)  # only references inside the page: url(#arrow)
    assert "sourceMappingURL" not in html
    assert "Permission is hereby granted" in html  # dagre's licence travels with its code
    assert len(re.findall(r"<script>", html)) == 2  # dagre, then the drawing


def test_chromium_renders_every_feature_with_its_status(page: Path, quickstart: Path) -> None:
    parsed = Features()
    parsed.feed(browse(page.as_uri(), "--dump-dom"))
    project = api.Project.load(cwd=quickstart)
    expected = {f["feature"]: f for f in api.status(project)["features"]}
    listing = api.list_features(project)["features"]
    assert {k: v["status"] for k, v in parsed.found.items()} == {
        "shop/products": "needs_update", "shop/reviews": "missing", "shop/pricing": "missing",
        "shop/text_stats": "up_to_date", "shop/ranking": "missing",
    }  # fmt: skip
    assert {k: v["status"] for k, v in expected.items()} == {
        k: v["status"] for k, v in parsed.found.items()
    }
    text = {k: " ".join(v["text"].split()) for k, v in parsed.found.items()}
    assert "needs update: 1 stale" in text["shop/products"]
    assert "missing: 8 new" in text["shop/reviews"]
    assert "up to date · 8 stored" in text["shop/text_stats"]
    assert "last run 20" in text["shop/products"] and "(success)" in text["shop/products"]
    assert "no run yet" in text["shop/ranking"]
    assert all(
        f"{field} @1" in text["shop/products"] for field in ("title", "description", "price")
    )
    # dagre placed the features left to right along their deps, and every edge was drawn
    x = {k: float(re.findall(r"translate\(([-\d.]+)", v["x"])[0]) for k, v in parsed.found.items()}
    assert x["shop/products"] < x["shop/pricing"] < x["shop/ranking"]
    assert x["shop/reviews"] < x["shop/pricing"]
    assert parsed.dep_edges == 5
    assert parsed.field_edges == sum(len(f["deps"]) for g in listing for f in g["fields"]) == 8

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "graph-quickstart.png"
    shot.unlink(missing_ok=True)
    browse(page.as_uri() + "#fields", f"--screenshot={shot}", "--window-size=1200,560")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
