// Two models on one image (/compare): an upload becomes the page's image; each side follows its
// model's explanation job, then shows its map and marks the explained class.
"use strict";
(() => {
  cs.upload(document.getElementById("cmp-upload"), document.getElementById("cmp-upload-error"), (image) => {
    const q = cs.query();
    q.set("image", image);
    window.location.search = q.toString();
  });

  for (const side of document.querySelectorAll(".cs-side")) {
    cs.job(side.dataset.job, side.querySelector(".cs-job-box"), (job) => {
      if (job.status !== "done") return;
      const img = side.querySelector("img.cs-map");
      img.src = job.data.overlay;  // the full overlay, drawn on this first request
      img.hidden = false;
      const d = job.data;
      side.querySelector(".cs-explained-note").textContent =
        `${d.label} (class ${d.target}), score ${d.score.toFixed(3)}, ${d.seconds.toFixed(3)} s` +
        (d.layer ? ` at ${d.layer}` : "");
      const table = side.querySelector("table.cs-predictions");
      for (const p of JSON.parse(side.dataset.predictions)) {
        table.append(cs.el("tr", { "data-index": p.index, class: p.index === d.target ? "cs-explained" : "" },
                           cs.el("td", { text: p.rank }), cs.el("td", { text: p.label }),
                           cs.el("td", { text: p.probability.toFixed(3) })));
      }
      table.hidden = false;
    });
  }
})();
