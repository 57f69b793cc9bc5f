// mxd graph --format html: draws the feature graph from the JSON in #mxd-data.
// Layout: dagre (vendored, inlined above this script). Drawing: plain SVG, no other library.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg"; // a namespace name, not a download
  const data = JSON.parse(document.getElementById("mxd-data").textContent);
  const LINE = 18, PAD = 10, HEAD = 64, FONT = "13px system-ui, sans-serif";
  const MONO = "12px ui-monospace, monospace";
  const LABELS = {
    up_to_date: "up to date", needs_update: "needs update", missing: "missing",
    error: "error", root: "no asset",
  };

  const measure = document.createElement("canvas").getContext("2d");
  function width(text, font) { measure.font = font; return measure.measureText(text).width; }
  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, content, cls) {
    const t = el("text", { x: x, y: y, class: cls }, parent);
    t.textContent = content;
    return t;
  }
  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "never"; }

  function statusLine(f) {
    const label = LABELS[f.status] || f.status;
    if (f.status === "up_to_date") return label + " · " + f.stored + " stored";
    if (f.status === "root") return label + " · " + f.rows + " stored";
    const parts = ["new", "stale", "orphaned"].filter((k) => f[k] > 0).map((k) => f[k] + " " + k);
    return label + (parts.length ? ": " + parts.join(", ") : "");
  }
  function runLine(f) {
    return f.last_run ? "last run " + when(f.last_run.at) + " (" + f.last_run.status + ")"
      : "no run yet";
  }

  // 1. sizes from the text each box holds, then the layout
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 28, ranksep: 90, marginx: 24, marginy: 24 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const f of data.features) {
    const lines = [[f.feature, "bold " + FONT], [statusLine(f), FONT], [runLine(f), FONT]];
    for (const field of f.fields) lines.push([field.field + " @" + field.code_version, MONO]);
    const w = Math.max(...lines.map(([t, font]) => width(t, font))) + 2 * PAD;
    f.box = { w: Math.max(180, Math.ceil(w)), h: HEAD + 4 + f.fields.length * LINE + 6 };
    graph.setNode(f.feature, { width: f.box.w, height: f.box.h });
  }
  for (const e of data.edges) graph.setEdge(e.from, e.to, { optional: e.optional });
  dagre.layout(graph);

  // 2. the drawing
  const size = graph.graph();
  const svg = el("svg", {
    id: "graph", width: size.width, height: size.height,
    viewBox: "0 0 " + size.width + " " + size.height,
  }, document.getElementById("canvas"));
  const defs = el("defs", {}, svg);
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }, marker);
  const edgeLayer = el("g", { id: "dep-edges" }, svg);
  const fieldLayer = el("g", { id: "field-edges", class: "hidden" }, svg);
  const nodeLayer = el("g", { id: "features" }, svg);

  function smooth(points) {
    let d = "M" + points[0].x + "," + points[0].y;
    for (let i = 1; i < points.length - 1; i++) {
      const p = points[i], q = points[i + 1];
      d += " Q" + p.x + "," + p.y + " " + (p.x + q.x) / 2 + "," + (p.y + q.y) / 2;
    }
    const last = points[points.length - 1];
    return d + " L" + last.x + "," + last.y;
  }
  for (const e of graph.edges()) {
    const edge = graph.edge(e);
    el("path", {
      d: smooth(edge.points), class: "dep" + (edge.optional ? " optional" : ""),
      "data-from": e.v, "data-to": e.w, "marker-end": "url(#arrow)",
    }, edgeLayer);
  }

  const anchors = {}; // "feature.field" -> {left, right, y}
  for (const f of data.features) {
    const pos = graph.node(f.feature);
    const x = pos.x - f.box.w / 2, y = pos.y - f.box.h / 2;
    const g = el("g", {
      class: "feature status-" + f.status, "data-feature": f.feature, "data-status": f.status,
      transform: "translate(" + x + "," + y + ")",
    }, nodeLayer);
    const tip = [f.feature, f.description || "", statusLine(f), ...(f.causes || [])];
    el("title", {}, g).textContent = tip.filter(Boolean).join("\n");
    el("rect", { width: f.box.w, height: f.box.h, rx: 7, class: "box" }, g);
    el("rect", { width: f.box.w, height: HEAD, rx: 7, class: "head" }, g);
    el("line", { x1: 0, x2: f.box.w, y1: HEAD, y2: HEAD, class: "rule" }, g);
    text(g, PAD, 19, f.feature, "key");
    text(g, PAD, 37, statusLine(f), "status");
    text(g, PAD, 55, runLine(f), "run");
    f.fields.forEach((field, i) => {
      const top = HEAD + 4 + i * LINE;
      const ref = f.feature + "." + field.field;
      const row = el("g", { class: "field", "data-field": ref }, g);
      el("rect", { x: 2, y: top, width: f.box.w - 4, height: LINE, class: "field-bg" }, row);
      text(row, PAD, top + 13, field.field + " @" + field.code_version, "field-name");
      anchors[ref] = { left: x, right: x + f.box.w, y: y + top + LINE / 2, deps: field.deps };
    });
  }

  // 3. field-level edges: all of them with the toggle, a field's own on hover
  for (const [ref, a] of Object.entries(anchors)) {
    for (const parent of a.deps) {
      const p = anchors[parent];
      if (!p) continue; // parent feature not selected
      const dx = Math.max(40, (a.left - p.right) / 2);
      el("path", {
        d: "M" + p.right + "," + p.y + " C" + (p.right + dx) + "," + p.y + " " +
          (a.left - dx) + "," + a.y + " " + a.left + "," + a.y,
        class: "field-edge", "data-from": parent, "data-to": ref,
      }, fieldLayer);
    }
  }
  const toggle = document.getElementById("show-fields");
  toggle.checked = location.hash === "#fields"; // graph.html#fields opens with them shown
  fieldLayer.classList.toggle("hidden", !toggle.checked);
  toggle.addEventListener("change", () => fieldLayer.classList.toggle("hidden", !toggle.checked));
  function highlight(ref, on) {
    const a = anchors[ref];
    if (!a) return;
    const related = new Set([ref, ...a.deps]);
    for (const [other, o] of Object.entries(anchors)) if (o.deps.includes(ref)) related.add(other);
    document.querySelectorAll(".field").forEach((row) => {
      row.classList.toggle("related", on && related.has(row.dataset.field));
    });
    document.querySelectorAll(".field-edge").forEach((edge) => {
      const mine = edge.dataset.to === ref || edge.dataset.from === ref;
      edge.classList.toggle("hl", on && mine);
    });
    fieldLayer.classList.toggle("hovering", on);
  }
  document.querySelectorAll(".field").forEach((row) => {
    row.addEventListener("mouseenter", () => highlight(row.dataset.field, true));
    row.addEventListener("mouseleave", () => highlight(row.dataset.field, false));
  });

  // 4. header and summary
  document.getElementById("title").textContent = data.project + " · store " + data.store;
  const run = data.last_run;
  document.getElementById("last-run").textContent = run
    ? "Last run " + run.run_id + ": " + run.status + ", finished " + when(run.finished_at || run.started_at)
    : "No run recorded in this store yet.";
  document.getElementById("generated").textContent = "Status as of " + when(data.generated_at);
  const counts = {};
  for (const f of data.features) counts[f.status] = (counts[f.status] || 0) + 1;
  document.querySelectorAll("#legend [data-status]").forEach((item) => {
    const n = counts[item.dataset.status] || 0;
    item.querySelector(".count").textContent = String(n);
    item.classList.toggle("none", n === 0);
  });
  document.body.dataset.rendered = "true";
})();
