// The leaderboard page: submit the form as a job, follow its progress, draw the table, the
// statements and the plot. The address holds the settings (and run=1 once started), so a
// reload shows the same result: the server answers a finished job from its cache at once.
"use strict";
(() => {
  const form = document.getElementById("board-form");
  if (!form) return;
  const errorBox = document.getElementById("board-error");
  const jobsBox = document.getElementById("board-jobs");
  const result = document.getElementById("board-result");
  let latest = null;

  function settings() {
    const out = {};
    for (const el of form.elements) {
      if (el.name && el.value.trim() !== "") out[el.name] = el.value.trim();
    }
    return out;
  }

  async function start() {
    cs.clearError(errorBox);
    const s = settings();
    history.replaceState(null, "", "/leaderboard?" + new URLSearchParams({ ...s, run: "1" }).toString());
    let job;
    try {
      job = await cs.api("/api/leaderboard", { json: s });
    } catch (e) {
      cs.showError(errorBox, e.message);
      return;
    }
    latest = job.id;
    const row = cs.el("div", { class: "board-job" }, cs.el("span", { class: "muted", text: job.title }));
    jobsBox.prepend(row);
    cs.job(job, row, (j) => {
      if (j.status === "failed" && j.id === latest) cs.showError(errorBox, j.error || "the job failed");
      if (j.status === "done" && j.id === latest) draw(j);
    });
  }

  function draw(j) {
    const data = j.data || {};
    const table = cs.el("table", { class: "cs-table board-table" },
      cs.el("tr", {}, ...data.header.map((h) => cs.el("th", { text: h }))));
    for (const row of data.table) table.append(cs.el("tr", {}, ...row.map((c) => cs.el("td", { text: c }))));
    const said = cs.el("div", { class: "statements" },
      ...[...data.statements, data.rule].map((s) => cs.el("p", { text: s })));
    const links = cs.el("p", {}, cs.el("a", { href: j.files["leaderboard.csv"], text: "CSV" }), " · ",
      cs.el("a", { href: j.files["leaderboard.html"], text: "HTML page" }));
    result.replaceChildren(cs.el("h2", { text: "Result" }), cs.el("p", { class: "muted", text: data.meta }),
      table, said, cs.el("img", { src: j.files["leaderboard.png"], alt: "means with 95% intervals per metric" }),
      links);
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); start(); });
  // not form.dataset: a form's named control ("dataset") shadows the element's own properties
  if (form.getAttribute("data-autorun") === "1") start();
})();
