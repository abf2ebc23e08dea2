// The neighbours panel: an atlas image's (or any image's) nearest atlas images, as thumbnails
// with distances, labels, predictions and a one-click link into the image explainer.
//
//   csNeighbors.show(panelEl, atlasId, layer, {index: 12} | {image: "upload:..."}, {k, metric, head})
//     (head: false leaves out the query line, for a page that shows the query itself)
//   csNeighbors.queryForm(hostEl, onQuery)   (an index, a chosen image or an upload)
//
// The map page calls it when a point is clicked. Clicking a thumbnail dispatches a
// "cs-neighbor" event ({detail: {index}}) on the panel, so the page can highlight that point.
"use strict";

(() => {
  const enc = encodeURIComponent;

  const el = cs.el;

  // The panel's own few rules, added once (the page's stylesheets belong to other modules).
  const STYLE = `
.cs-neighbors{display:flex;flex-wrap:wrap;gap:6px}
.cs-neighbor{margin:0;width:72px;font-size:11px;text-align:center}
.cs-neighbor img,.cs-query{image-rendering:pixelated;cursor:pointer;border:1px solid #ccc}
.cs-neighbor figcaption span,.cs-neighbor figcaption a{display:block}
.cs-neighbors-head{display:flex;align-items:center;gap:8px;margin-bottom:6px}
.cs-wrong{color:#b00}`;

  function addStyle() {
    if (document.getElementById("cs-neighbors-style")) return;
    const style = el("style", {id: "cs-neighbors-style"}, STYLE);
    document.head.append(style);
  }

  function thumbUrl(atlasId, index) {
    return `/api/atlas/${enc(atlasId)}/thumbs/${index}.png`;
  }


  function card(panel, atlasId, row, model) {
    const item = el("figure", {class: "cs-neighbor", "data-index": row.index});
    const img = el("img", {src: thumbUrl(atlasId, row.index), alt: row.source,
                           title: row.source, width: 64, height: 64});
    img.addEventListener("click", () => panel.dispatchEvent(
      new CustomEvent("cs-neighbor", {detail: {index: row.index}, bubbles: true})));
    const caption = el("figcaption");
    caption.append(el("span", {class: "cs-distance"}, row.distance.toFixed(4)));
    // label and prediction are class indices; their names come beside them when known
    const truth = row.label === null ? "?" : (row.label_name ?? row.label);
    const guess = row.prediction === null ? "?" : (row.prediction_name ?? row.prediction);
    const wrong = row.label !== null && row.prediction !== null && row.label !== row.prediction;
    caption.append(el("span", {class: wrong ? "cs-label cs-wrong" : "cs-label"},
                      `${truth} \u2192 ${guess}`));
    caption.append(el("a", {href: cs.explainUrl(`atlas:${atlasId}/${row.index}`, model), class: "cs-explain"}, "explain"));
    item.append(img, caption);
    return item;
  }

  async function show(panel, atlasId, layer, query, options) {
    addStyle();
    const opts = Object.assign({k: 10, metric: "cosine"}, options || {});
    const params = new URLSearchParams({k: opts.k, metric: opts.metric});
    if (query && query.index !== undefined && query.index !== null) params.set("index", query.index);
    else if (query && query.image) params.set("image", query.image);
    panel.replaceChildren(el("p", {class: "muted"}, "finding neighbours\u2026"));
    let data;
    try {
      data = await cs.api(`/api/atlas/${enc(atlasId)}/${enc(layer)}/neighbors?${params}`);
    } catch (err) {
      panel.replaceChildren();
      cs.showError(panel, err.message);
      return null;
    }
    const head = el("div", {class: "cs-neighbors-head"});
    if (data.query.index !== undefined) {
      head.append(el("img", {src: thumbUrl(atlasId, data.query.index), alt: data.query.source,
                             title: data.query.source, width: 64, height: 64, class: "cs-query"}));
      head.append(el("a", {href: cs.explainUrl(`atlas:${atlasId}/${data.query.index}`, data.model)},
                        "explain this image"));
    } else {
      const preview = el("img", {src: `/api/explain/image.png?image=${enc(data.query.image)}`,
                                 alt: data.query.image, title: data.query.image, height: 64,
                                 class: "cs-query"});
      preview.addEventListener("error", () => preview.remove());  // no preview route: name only
      head.append(preview, el("span", {}, `query ${data.query.image}`));
      head.append(el("a", {href: cs.explainUrl(data.query.image, data.model)}, "explain this image"));
    }
    head.append(el("span", {class: "muted"},
                   ` ${data.neighbors.length} nearest at ${data.layer} (${data.metric} distance)`));
    const grid = el("div", {class: "cs-neighbors"});
    for (const row of data.neighbors) grid.append(card(panel, atlasId, row, data.model));
    panel.replaceChildren(...(opts.head === false ? [] : [head]), grid);
    return data;
  }

  // A query form: an atlas index, an image of the served folders or samples, or an upload.
  // Each choice calls onQuery({index} | {image}); the page puts it in its URL and calls show().
  async function queryForm(host, onQuery) {
    const form = el("form", {class: "inline cs-neighbors-query"});
    const index = el("input", {type: "number", min: 0, name: "index", placeholder: "index", size: 6});
    const choose = el("select", {name: "image"});
    choose.append(el("option", {value: ""}, "choose an image…"));
    const upload = el("input", {type: "file", name: "file", accept: "image/*"});
    const error = el("p", {class: "cs-error", hidden: ""});
    const label = (text, input) => { const l = el("label", {}, text); l.append(input); return l; };
    const go = el("button", {type: "submit"}, "Find");
    form.append(label("atlas image", index), go, label("or an image", choose),
                label("or upload", upload));
    host.replaceChildren(form, error);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (index.value !== "") onQuery({index: Number(index.value)});
    });
    choose.addEventListener("change", () => { if (choose.value) onQuery({image: choose.value}); });
    cs.upload(upload, error, (image) => onQuery({image}));
    try {
      for (const c of (await cs.api("/api/images")).images) {
        choose.append(el("option", {value: c.ref}, `${c.group}: ${c.name}`));
      }
    } catch (err) {
      cs.showError(error, err.message);
    }
    return form;
  }

  window.csNeighbors = {show, queryForm};
})();
