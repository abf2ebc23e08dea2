// The image explainer page: top classes, a form per method, maps side by side (hand-written).
// The page's state lives in its address: image, model, target, methods, layer, faithfulness and
// METHOD.OPTION=value for options that differ from their defaults.
"use strict";
(() => {
  const setup = JSON.parse(document.getElementById("ex-setup").textContent);
  const byId = (id) => document.getElementById(id);
  let target = setup.target;  // null until a class is chosen; "top1" or a class index

  // -- choosing the image and the model: navigate, so the address holds the choice -------------
  function go(changes) {
    const q = address();
    for (const [k, v] of Object.entries(changes)) { if (v === null) q.delete(k); else q.set(k, v); }
    window.location.search = q.toString();
  }
  byId("ex-image-choice").addEventListener("change", (e) => go({ image: e.target.value, name: null, target: null }));
  byId("ex-model").addEventListener("change", (e) => go({ model: e.target.value, target: null, layer: null }));
  cs.upload(byId("ex-upload"), byId("ex-upload-error"), (image, name) => go({ image, name, target: null }));

  // -- a small form per method, from the registry's option types -------------------------------
  function optionInput(method, spec, value) {
    const name = `${method}.${spec.name}`;
    let input;
    if (spec.type === "choice") {
      input = cs.el("select", { name });
      for (const c of spec.choices) input.append(cs.el("option", { value: c, text: c }));
      input.value = value;
    } else if (spec.type === "bool") {
      input = cs.el("input", { type: "checkbox", name });
      input.checked = Boolean(value);
    } else if (spec.type === "text") {
      input = cs.el("input", { type: "text", name, value: value ?? "" });
    } else {
      input = cs.el("input", { type: "number", name, step: spec.type === "int" ? "1" : "any",
                               value: value ?? "", placeholder: spec.nullable ? "auto" : "" });
    }
    input.dataset.option = spec.name;
    input.dataset.kind = spec.type;
    return cs.el("label", {}, spec.name, input);
  }

  function methodRow(info) {
    const chosen = setup.methods.includes(info.name);
    const box = cs.el("input", { type: "checkbox", value: info.name, class: "ex-use" });
    box.checked = chosen;
    const given = setup.options[info.name] || {};
    const row = cs.el("div", { class: "ex-method", "data-method": info.name, title: info.summary },
      cs.el("label", {}, box, " " + info.name + " ", cs.el("span", { class: "family", text: info.family + (info.needs_layer ? ", layer" : "") })));
    if (info.options.length) {
      const details = cs.el("details", {}, cs.el("summary", { text: "options" }));
      for (const spec of info.options) {
        details.append(optionInput(info.name, spec, spec.name in given ? given[spec.name] : spec.default));
      }
      if (Object.keys(given).length) details.open = true;
      row.append(details);
    }
    return row;
  }
  const list = byId("ex-method-list");
  for (const info of setup.catalog) list.append(methodRow(info));
  byId("ex-faithfulness").checked = setup.faithfulness;

  function chosenMethods() {
    return [...list.querySelectorAll("input.ex-use:checked")].map((b) => b.value);
  }

  // Options of a method as JSON values, only those that differ from the default.
  function optionsOf(method) {
    const out = {};
    const defaults = setup.defaults[method] || {};
    for (const input of list.querySelectorAll(`.ex-method[data-method="${method}"] [data-option]`)) {
      const kind = input.dataset.kind;
      let value;
      if (kind === "bool") value = input.checked;
      else if (kind === "int" || kind === "float") value = input.value.trim() === "" ? null : Number(input.value);
      else value = input.value.trim() === "" ? null : input.value;  // an empty text field: the default (None)
      if (value !== defaults[input.dataset.option]) out[input.dataset.option] = value;
    }
    return out;
  }

  function address() {
    const q = new URLSearchParams();
    q.set("image", setup.image);
    if (setup.name) q.set("name", setup.name);  // an upload's file name, shown on the page
    q.set("model", setup.model);
    if (target !== null && target !== undefined) q.set("target", String(target));
    const methods = chosenMethods();
    q.set("methods", methods.join(","));
    q.set("layer", byId("ex-layer").value);
    if (byId("ex-faithfulness").checked) q.set("faithfulness", "1");
    for (const m of methods) {
      for (const [k, v] of Object.entries(optionsOf(m))) q.set(`${m}.${k}`, v === null ? "none" : String(v));
    }
    return q;
  }

  // -- top classes -------------------------------------------------------------------------------
  async function showClasses() {
    const ol = byId("ex-classes");
    try {
      const q = new URLSearchParams({ image: setup.image, model: setup.model, k: "5" });
      const waiting = ol.querySelector("li.muted");
      const answer = await cs.waitNote(waiting || ol, cs.api(`/api/predict?${q}`));
      ol.replaceChildren();
      for (const p of answer.predictions) {
        const button = cs.el("button", { type: "button", "data-class": String(p.index) },
          cs.el("span", { text: `${p.rank}. ${p.label}` }),
          cs.el("span", { class: "prob", text: (100 * p.probability).toFixed(1) + "%" }));
        button.addEventListener("click", () => { target = p.index; markClass(); explainAll(); });
        ol.append(cs.el("li", {}, button));
      }
      if (target === "top1" && answer.predictions.length) target = answer.predictions[0].index;
      markClass();
    } catch (error) {
      ol.replaceChildren();
      cs.showError(byId("ex-predict-error"), error.message);
    }
  }
  function markClass() {
    for (const b of byId("ex-classes").querySelectorAll("button")) {
      b.classList.toggle("active", String(target) === b.dataset.class);
    }
  }

  // -- maps: one job per method, side by side ---------------------------------------------------
  let following = [];  // the jobs of the maps on show (their messages come over the page's one stream)
  const UNSEEN = 0.5;  // the brightness render.overlay leaves to the pixels the model never saw
  const photoUrl = `/api/explain/image.png?image=${encodeURIComponent(setup.image)}`;
  function card(method) {
    // The map is drawn as the server's overlay draws it, over the photo in the browser: the job's
    // gray levels (the normalized map) scaled bilinearly onto the box the model saw, each level
    // looked up in the overlay's colour and alpha table; outside the box the box's shadow darkens
    // the photo. The full overlay (map.png) is drawn by the server only for an export.
    const parts = {
      title: cs.el("h3", { text: method }),
      job: cs.el("div", { class: "job" }),
      photo: cs.el("img", { class: "ex-photo", alt: "" }),
      box: cs.el("div", { class: "ex-box" }),
      canvas: cs.el("canvas", { class: "ex-overlay", role: "img", "aria-label": `${method} map` }),
      numbers: cs.el("div", { class: "numbers" }),
      export: cs.el("div", { class: "export" }),
      error: cs.el("p", { class: "cs-error" }),
    };
    parts.box.append(parts.canvas);
    parts.view = cs.el("div", { class: "ex-view" }, parts.photo, parts.box);
    parts.view.hidden = parts.canvas.hidden = true;
    parts.error.hidden = true;
    parts.root = cs.el("div", { class: "card ex-map", "data-method": method },
      parts.title, parts.job, parts.view, parts.numbers, parts.export, parts.error);
    return parts;
  }

  function place(parts, d) {
    const [top, left, bottom, right] = d.box;
    const [height, width] = d.size;
    const pct = (v, of) => `${(100 * v) / of}%`;
    Object.assign(parts.box.style, { top: pct(top, height), left: pct(left, width),
      width: pct(right - left, width), height: pct(bottom - top, height),
      boxShadow: `0 0 0 100vmax rgba(0, 0, 0, ${1 - UNSEEN})` });
    parts.view.style.aspectRatio = `${width} / ${height}`;
    parts.photo.src = photoUrl;
  }

  function paint(parts, d, url) {
    const levels = new Image();
    levels.onload = () => {
      // on the server overlay's own pixels (the photo's, shrunk to its longest side), which the
      // page then scales to the card as it scaled the server's picture
      const [top, left, bottom, right] = d.box;
      const scale = Math.min(1, setup.overlay_side / Math.max(...d.size));
      const canvas = parts.canvas;
      canvas.width = Math.max(1, Math.round((right - left) * scale));
      canvas.height = Math.max(1, Math.round((bottom - top) * scale));
      const g = canvas.getContext("2d", { willReadFrequently: true });
      g.imageSmoothingEnabled = true;
      g.drawImage(levels, 0, 0, canvas.width, canvas.height);
      const pixels = g.getImageData(0, 0, canvas.width, canvas.height);
      const px = pixels.data;
      const table = setup.colours[d.signed ? "signed" : "unsigned"];
      for (let i = 0; i < px.length; i += 4) {
        const k = 4 * px[i];
        px[i] = table[k]; px[i + 1] = table[k + 1]; px[i + 2] = table[k + 2]; px[i + 3] = table[k + 3];
      }
      g.putImageData(pixels, 0, 0);
      canvas.dataset.drawn = "1";
      canvas.dispatchEvent(new CustomEvent("cs-drawn", { bubbles: true }));
    };
    levels.src = url;
  }

  function fmt(x, digits = 3) { return typeof x === "number" ? x.toFixed(digits) : "–"; }

  function showResult(parts, job) {
    if (job.status !== "done") {
      cs.showError(parts.error, job.error || `the job was ${job.status}`);
      return;
    }
    const d = job.data;
    parts.job.replaceChildren();
    place(parts, d);
    parts.view.hidden = parts.canvas.hidden = false;
    paint(parts, d, d.levels || job.files["levels.png"]);  // the levels come in the answer
    parts.title.textContent = `${d.method}: ${d.label}`;
    const bits = [`${fmt(d.seconds)} s`];
    if (d.layer) bits.push(`layer ${d.layer}`);
    parts.numbers.replaceChildren(bits.join(" · "));
    if ("deletion" in d) {  // the report's arrows: a faithful map has a low deletion, a high insertion AUC
      parts.numbers.append(" · ",
        cs.el("span", { class: "metric", title: "deletion AUC: lower is better", text: `deletion ${fmt(d.deletion)} ↓` }),
        " · ",
        cs.el("span", { class: "metric", title: "insertion AUC: higher is better", text: `insertion ${fmt(d.insertion)} ↑` }));
    }
    if (d.layer_reason) parts.numbers.title = d.layer_reason;
    const stem = `${(setup.name || setup.image).replace(/[^A-Za-z0-9._-]+/g, "_")}_${d.method}_${d.target}`;
    parts.export.replaceChildren(
      cs.el("a", { href: d.overlay, download: `${stem}.png`, class: "export-png", text: "PNG" }),
      cs.el("a", { href: job.files["map.npy"], download: `${stem}.npy`, class: "export-npy", text: ".npy" }));
  }

  async function explainOne(method, parts) {
    const body = { image: setup.image, model: setup.model, method, target: target ?? "top1",
                   layer: byId("ex-layer").value, options: optionsOf(method),
                   faithfulness: byId("ex-faithfulness").checked };
    try {
      const job = await cs.api("/api/explain", { json: body });
      following.push(cs.job(job, parts.job, (j) => showResult(parts, j)));
    } catch (error) {
      parts.job.replaceChildren();
      cs.showError(parts.error, error.message);
    }
  }

  function explainAll() {
    for (const f of following) f.close();  // earlier jobs run on (their results are cached)
    following = [];
    const pageError = byId("ex-error");
    cs.clearError(pageError);
    const methods = chosenMethods();
    if (!methods.length) { cs.showError(pageError, "choose at least one method"); return; }
    history.replaceState(null, "", `/explain?${address()}`);
    const maps = byId("ex-maps");
    maps.replaceChildren();
    for (const method of methods) {
      const parts = card(method);
      maps.append(parts.root);
      explainOne(method, parts);
    }
  }
  byId("ex-run").addEventListener("click", () => { if (target === null) target = "top1"; explainAll(); });

  showClasses();
  if (target !== null && target !== undefined) explainAll();  // an address with a target shows its maps
})();
