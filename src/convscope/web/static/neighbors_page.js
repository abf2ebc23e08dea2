// The neighbours page (/atlas/{id}/{layer}/neighbors): the query lives in the URL (?index= or
// ?image=, k, metric), a stable, shareable address; static/neighbors.js draws the panel.
"use strict";
(() => {
  const panel = document.getElementById("nb-panel");
  const options = document.getElementById("nb-options");
  const atlas = panel.dataset.atlas, layer = panel.dataset.layer;
  function current() {
    const q = cs.query();
    if (q.get("index") !== null && q.get("index") !== "") return {index: Number(q.get("index"))};
    if (q.get("image")) return {image: q.get("image")};
    return null;
  }
  function run(query) {
    const q = cs.query();
    q.delete("index"); q.delete("image");
    if (query.index !== undefined) q.set("index", query.index); else q.set("image", query.image);
    q.set("k", options.k.value); q.set("metric", options.metric.value);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    return csNeighbors.show(panel, atlas, layer, query, {k: options.k.value, metric: options.metric.value});
  }
  csNeighbors.queryForm(document.getElementById("nb-query"), run);
  options.addEventListener("change", () => { const q = current(); if (q) run(q); });
  options.addEventListener("submit", (e) => e.preventDefault());
  panel.addEventListener("cs-neighbor", (e) => run({index: e.detail.index}));
  const start = current();
  if (start) run(start);
})();
