// The leaderboard page: submit the form as a job, follow its progress, draw the table, the
// statements and the plot. The address holds the settings (and run=1 once started), so a
// reload shows the same result: the server answers a finished job from its cache at once.
"use strict";
(() => {
  const form = document.getElementById("board-form");
  if (!form) return;
  const result = document.getElementById("board-result");
  cs.jobForm(form, { url: "/api/leaderboard", page: "/leaderboard", settings: () => cs.formSettings(form), draw,
                     errorBox: document.getElementById("board-error"), jobsBox: document.getElementById("board-jobs") });

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
})();
