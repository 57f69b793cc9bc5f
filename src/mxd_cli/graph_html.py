"""The feature graph as one self-contained HTML page, coloured by each feature's status.

Input: the document of :func:`mxd_cli.api.graph_status`. The page inlines everything it
uses — the data as JSON, the stylesheet, the drawing script and the layout library
(dagre, https://github.com/dagrejs/dagre, MIT, vendored in ``static/vendor``) — so it opens
from a file or an e-mail attachment with no network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"
LEGEND = [
    ("up_to_date", "up to date"),
    ("needs_update", "needs update (new / stale / orphaned samples)"),
    ("missing", "missing (nothing stored yet)"),
    ("error", "error (the asset failed while checking)"),
    ("root", "no asset (written outside mxd)"),
]


def _script(text: str) -> str:
    """Text safe inside <script>: no closing tag, no source-map fetch by devtools."""
    kept = [line for line in text.splitlines() if not line.startswith("//# sourceMappingURL=")]
    return "\n".join(kept).replace("</", "<\\/")


def to_html(document: dict[str, Any]) -> str:
    """The page for ``document`` (``api.graph_status``), as one string."""
    dagre = (STATIC / "vendor" / "dagre.min.js").read_text(encoding="utf-8")
    licence = (STATIC / "vendor" / "dagre.LICENSE").read_text(encoding="utf-8")
    drawing = (STATIC / "graph.js").read_text(encoding="utf-8")
    style = (STATIC / "graph.css").read_text(encoding="utf-8")
    legend = "\n".join(
        f'      <li data-status="{status}"><span class="swatch {status}"></span>'
        f'{html.escape(label)} <span class="count"></span></li>'
        for status, label in LEGEND
    )
    title = html.escape(f"mxd · {document['project']} · {document['store']}")
    data = _script(json.dumps(document, default=str))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="mxd graph --format html">
<title>{title}</title>
<style>
{style}</style>
</head>
<body>
  <header>
    <h1 id="title">{title}</h1>
    <p id="last-run"></p>
    <p id="generated"></p>
  </header>
  <div id="controls">
    <ul id="legend">
{legend}
    </ul>
    <label><input type="checkbox" id="show-fields"> field-level edges
      (hover a field to see its own)</label>
  </div>
  <div id="canvas"></div>
  <noscript>This page draws the graph with JavaScript.</noscript>
<script type="application/json" id="mxd-data">{data}</script>
<!-- @dagrejs/dagre 3.1.3 (graph layout), MIT licence:
{html.escape(licence).replace("--", "- -")}-->
<script>
{_script(dagre)}
</script>
<script>
{_script(drawing)}
</script>
</body>
</html>
"""
