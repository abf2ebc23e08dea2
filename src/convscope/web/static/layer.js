// Layer and unit pages: lazy feature-visualization tiles, the unit's classes, its top images.
"use strict";
const csLayer = (() => {
  // Tiles in view wait here and are asked for at most ACTIVE at a time: the server has one
  // worker, so more jobs in flight would not finish sooner, and each followed job holds one of
  // the browser's six connections to the server (its progress stream). A tile that scrolls out
  // of view before its turn leaves the queue; the jobs still running when the page is left are
  // cancelled, so the worker is free for the next page.
  const ACTIVE = 3;
  const waiting = [];
  const running = new Map();  // job id -> tile
  let active = 0;

  function pump() {
    while (active < ACTIVE && waiting.length) {
      const [grid, tile] = waiting.shift();
      active += 1;
      fill(grid, tile, () => { active -= 1; pump(); });
    }
  }

  window.addEventListener("pagehide", () => {
    for (const id of running.keys()) navigator.sendBeacon(`/api/jobs/${id}/cancel`);
    running.clear();
  });

  // A tile's visualization: ask the server (a cached result answers at once), else follow the
  // job and fill the tile in when it is done. Settings: the tile's seed, else the grid's (the
  // page's ?steps=&size=&seed=, checked by the server). Tiles already cached arrive drawn.
  function fill(grid, tile, finished) {
    const params = new URLSearchParams({ model: grid.dataset.model });
    for (const name of ["seed", "size", "steps"]) {
      const value = tile.dataset[name] || grid.dataset[name];
      if (value !== undefined && value !== "") params.set(name, value);
    }
    const img = tile.querySelector("img");
    const url = `/api/layers/${grid.dataset.layer}/${tile.dataset.channel}/visualization?${params}`;
    const show = (job) => {
      running.delete(job.id);
      finished();
      if (job.status === "done" && job.files["visualization.png"]) {
        img.addEventListener("load", () => { img.alt = img.dataset.alt || ""; tile.dataset.state = "done"; },
                             { once: true });
        img.addEventListener("error", () => { tile.dataset.state = "failed"; }, { once: true });
        img.src = job.files["visualization.png"];
        tile.querySelector(".cs-job")?.remove();
      } else {
        tile.dataset.state = job.status;
      }
    };
    tile.dataset.state = "asked";
    cs.api(url).then((job) => {
      if (job.status === "done") { show(job); return; }
      running.set(job.id, tile);
      tile.dataset.state = "running";
      cs.job(job, tile, show);
    }).catch((e) => {
      finished();
      tile.dataset.state = "failed";
      cs.showError(tile.querySelector("figcaption"), e.message);
    });
  }

  function visualizations(grid) {
    if (!grid) return;
    const tiles = [...grid.querySelectorAll(".vis")];
    const want = (tile) => { tile.dataset.state = "waiting"; waiting.push([grid, tile]); };
    if (!("IntersectionObserver" in window)) { tiles.forEach(want); pump(); return; }
    const seen = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const tile = entry.target;
        if (entry.isIntersecting && !tile.dataset.state) want(tile);
        else if (!entry.isIntersecting && tile.dataset.state === "waiting") {
          const at = waiting.findIndex(([, t]) => t === tile);
          if (at >= 0) waiting.splice(at, 1);
          tile.dataset.state = "";
        }
      }
      pump();
    }, { rootMargin: "200px" });
    tiles.forEach((t) => seen.observe(t));
  }

  function classRows(rows, scale, negative) {
    if (!rows.length) return cs.el("p", { class: "muted", text: `none: no class has a ${negative ? "negative" : "positive"} score` });
    const table = cs.el("table", { class: "cs-table classes" });
    for (const r of rows) {
      const width = scale > 0 ? Math.round(100 * Math.abs(r.score) / scale) : 0;
      const fill = cs.el("div", { class: negative ? "fill neg" : "fill", style: `width:${width}%` });
      table.append(cs.el("tr", { "data-class": String(r.index) },
        cs.el("td", { text: r.label }), cs.el("td", { class: "num", text: r.score.toPrecision(3) }),
        cs.el("td", { class: "bar" }, fill)));
    }
    return table;
  }

  // The classes the unit supports most (and opposes most), from a cached job.
  function classes(el) {
    if (!el) return;
    const draw = (job) => {
      el.querySelector(".cs-job")?.remove();
      if (job.status !== "done") { cs.showError(el.appendChild(cs.el("p")), job.error || job.status); return; }
      const d = job.data;
      const scale = Math.max(...d.classes.map((r) => Math.abs(r.score)), ...d.opposed.map((r) => Math.abs(r.score)));
      const how = d.method === "weights"
        ? "From the weights above the layer (the same for every image): "
        : "From gradients at the current image, since the layers above are not linear: ";
      el.append(cs.el("p", { class: "muted method", "data-method": d.method, text: how + d.reason + ". Score: the logit's change per unit rise of the channel's mean." }),
        cs.el("div", { class: "supports" }, cs.el("strong", { text: "Supports most" }), classRows(d.classes, scale, false)),
        cs.el("div", { class: "opposes" }, cs.el("strong", { text: "Opposes most" }), classRows(d.opposed, scale, true)));
      el.dataset.state = "done";
    };
    cs.api(el.dataset.url).then((job) => (job.status === "done" ? draw(job) : cs.job(job, el, draw)))
      .catch((e) => cs.showError(el, e.message));
  }

  // The atlas's top images of the unit: the receptive-field patch, linking to the explainer.
  function top(el) {
    cs.api(el.dataset.url).then((d) => {
      if (!d.top.length) { el.append(cs.el("p", { class: "muted", text: "The scan stored no images for this channel." })); return; }
      for (const t of d.top) {
        const model = new URL(el.dataset.url, location.href).searchParams.get("model");
        const link = cs.el("a", { href: cs.explainUrl(t.image, model), title: t.source },
          cs.el("img", { src: t.patch, alt: `patch of image ${t.index}` }));
        el.append(cs.el("figure", { class: "tile", "data-index": String(t.index) }, link,
          cs.el("figcaption", { text: `#${t.rank + 1} · ${t.value.toPrecision(3)} · image ${t.index}` })));
      }
    }).catch((e) => cs.showError(el, e.message));
  }

  return { visualizations, classes, top };
})();
window.csLayer = csLayer;
// The layer page and the unit page: whichever of these parts the page has.
csLayer.visualizations(document.getElementById("visualizations"));
csLayer.classes(document.getElementById("classes"));
for (const el of document.querySelectorAll(".top")) csLayer.top(el);
