// The synthesis lab: submit the form as a job, follow its progress, draw what it made.
// The address holds the settings (and run=1 once started), so a reload shows the same result:
// the server answers a finished job from its cache at once.
"use strict";
(() => {
  const form = document.getElementById("lab-form");
  if (!form) return;
  const kind = form.dataset.kind;
  const errorBox = document.getElementById("lab-error");
  const result = document.getElementById("lab-result");
  const settings = () => cs.formSettings(form, ["kind"]);

  // numbers with 4 significant digits (integers as they are); anything else as text
  function number(v) { return typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : String(v); }

  function percent(p) { return (100 * p).toFixed(1) + "%"; }

  function classTable(caption, rows) {
    const table = cs.el("table", { class: "cs-table" }, cs.el("caption", { text: caption }),
      cs.el("tr", {}, cs.el("th", { text: "class" }), cs.el("th", { class: "num", text: "probability" })));
    for (const r of rows) {
      table.append(cs.el("tr", {}, cs.el("td", { text: `${r.label} (${r.index})` }),
                         cs.el("td", { class: "num", text: percent(r.probability) })));
    }
    return table;
  }

  function summaryTable(data) {
    const skip = new Set(["pictures", "headline", "before", "after", "saved_png"]);
    const table = cs.el("table", { class: "cs-table lab-summary" });
    for (const [key, value] of Object.entries(data)) {
      if (skip.has(key) || value === null || typeof value === "object" && !Array.isArray(value)) continue;
      const shown = Array.isArray(value) ? value.map(number).join(", ") : number(value);
      table.append(cs.el("tr", {}, cs.el("th", { text: key }), cs.el("td", { text: shown })));
    }
    return table;
  }

  function draw(j) {
    const data = j.data || {};
    result.replaceChildren(cs.el("h2", { text: "Result" }), cs.el("p", { class: "headline", text: data.headline || "" }));
    const pictures = cs.el("div", { class: "pictures" });
    for (const p of data.pictures || []) {
      const img = cs.el("img", { src: j.files[p.file], alt: p.caption, "data-file": p.file });
      img.addEventListener("load", () => { if (img.naturalWidth < 112) img.classList.add("pixelated"); });
      pictures.append(cs.el("figure", {}, img, cs.el("figcaption", { text: p.caption })));
    }
    result.append(pictures);
    if (data.saved_png) {
      const fools = data.saved_png.fools;
      result.append(cs.el("p", { class: "verdict " + (fools ? "yes" : "no"),
        text: fools ? "The saved 8-bit PNG still fools the model." : "The saved 8-bit PNG does not fool the model." }));
      result.append(cs.el("div", { class: "tables" }, classTable("before", data.before),
        classTable("after", data.after), classTable("saved PNG, reloaded", data.saved_png.top)));
    }
    if (j.files["net.pt"]) {
      const again = new URLSearchParams({ kind: "fast_style", net: data.net, image: settings().image || "" });
      result.append(cs.el("p", {}, cs.el("a", { href: j.files["net.pt"], download: "style_net.pt", text: "download the network" }),
        " · ", cs.el("a", { href: "/lab?" + again.toString(), text: "apply it to another image" })));
    }
    result.append(summaryTable(data));
  }

  const upload = document.getElementById("lab-upload");
  if (upload) {
    cs.upload(upload, errorBox, (image) => {
      const field = form.querySelector('input[data-type="image"]');
      if (field) field.value = image;
    });
  }

  cs.jobForm(form, { url: `/api/lab/${kind}`, page: "/lab", query: { kind }, settings, draw, errorBox,
                     jobsBox: document.getElementById("lab-jobs") });
})();
