/* The dataset map of an atlas layer (/atlas/{id}/{layer}).
 *
 * Every point of the atlas is drawn: WebGL points when the browser has (hardware) WebGL,
 * otherwise, or with ?renderer=canvas, a Canvas2D fallback (both in static/map_draw.js). A second
 * 2D canvas on top carries what changes with the pointer: thumbnails (when zoomed in far enough),
 * the hover ring and the selection outline. A uniform grid over the data coordinates answers
 * "which points are near here / inside this box" without scanning all points.
 *
 * State that makes an address (colour, search, opened point) lives in the URL query.
 * window.csMap exposes the live state for the browser tests.
 */
"use strict";
(() => {
  const D = window.csMapDraw;   // static/map_draw.js
  const BG = D.BG, UNKNOWN = D.UNKNOWN, CORRECT = D.CORRECT, WRONG = D.WRONG, RAMP = D.RAMP, css = D.css;
  const classColor = D.classColor, rampColor = D.rampColor;
  const THUMB_MAX_VISIBLE = 600;   // at most this many points in view -> thumbnails in place of dots
  const GRID_ITEMS = 240;          // thumbnails shown in the selection grid
  const PICK_RADIUS = 10;          // CSS px around the pointer that count as "on a point"

  // ---- small helpers -------------------------------------------------------------------------
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return [...(root || document).querySelectorAll(sel)]; }
  const api = cs.api, showError = cs.showError, binary = cs.binary, download = cs.download;
  function setQuery(key, value) {
    const url = new URL(window.location.href);
    if (value === null || value === undefined || value === "") url.searchParams.delete(key);
    else url.searchParams.set(key, value);
    history.replaceState(null, "", url.toString());
  }

  // ---- the map -------------------------------------------------------------------------------
  class AtlasMap {
    constructor(root) {
      const d = root.dataset;
      this.root = root;
      this.id = d.atlas;
      this.layer = d.layer;
      this.method = d.method || "pca";
      this.alignTo = d.alignTo || "";
      this.base = "/api/atlas/" + encodeURIComponent(this.id);
      const query = new URL(window.location.href).searchParams;
      this.colorBy = query.get("color") || d.color || "label";
      this.wantRenderer = query.get("renderer") || "auto";
      this.info = JSON.parse($("#atlas-info").textContent || "null");
      this.n = 0;
      this.view = {cx: 0, cy: 0, scale: 1};
      this.tool = "pan";
      this.highlight = null;       // {flags: Uint8Array, list: Int32Array, what: string}
      this.selection = null;       // Int32Array of selected indices
      this.tiles = new Map();      // tile number -> {img, ready}
      this.frameTimes = [];
      this.mode = "dots";
      this.visible = 0;
      this.hover = -1;
      this.status = $(".map-status", root);
    }

    start() {
      this.buildControls();
      const info = this.info ? Promise.resolve(this.info) : api(this.base + "/info");
      return info.then((info) => {
        this.info = info;
        this.tileSide = info.tile_side;
        this.thumb = info.thumb_size;
        this.classNames = info.class_names || null;
        return Promise.all([this.projection(), this.columns()]);
      }).then((parts) => {
        this.setData(new Float32Array(parts[0]), parts[1]);
        this.setupRenderer();
        this.bindPointer();
        this.recolor();
        this.fit();
        this.root.dataset.state = "ready";
        this.say(this.n.toLocaleString() + " points");
        const q = new URL(window.location.href).searchParams;
        if (q.get("q")) { $(".map-search input", this.root).value = q.get("q"); this.search(q.get("q")); }
        if (q.get("point") !== null && q.get("point") !== "") this.openPoint(parseInt(q.get("point"), 10));
      }).catch((err) => {
        this.root.dataset.state = "error";
        showError(this.status, err.message);
      });
    }

    say(text) { this.status.classList.remove("cs-error"); this.status.textContent = text; }

    // The projection is a (cached) job on the server: POST it, follow its progress, then fetch the
    // coordinates as raw float32 pairs.
    projection() {
      const progress = $(".map-progress", this.root);
      const layerBase = this.base + "/" + encodeURIComponent(this.layer);
      const coordsUrl = layerBase + "/projection/" + encodeURIComponent(this.method) + "/coords" +
        (this.alignTo ? "?align_to=" + encodeURIComponent(this.alignTo) : "");
      this.say("Computing the " + this.method.toUpperCase() + " projection…");
      progress.hidden = false;
      return cs.run(layerBase + "/projection", {method: this.method, align_to: this.alignTo || null}, progress)
        .then((job) => {
          this.jobStatus = job.status;
          if (job.status !== "done") throw new Error(job.error || "the projection was " + job.status);
          progress.hidden = true;
          return binary(coordsUrl);
        });
    }

    columns() {
      const b = this.base + "/columns/";
      return Promise.all([binary(b + "labels"), binary(b + "predictions"), binary(b + "confidence")])
        .then((c) => {
          return {labels: new Int32Array(c[0]), predictions: new Int32Array(c[1]), confidence: new Float32Array(c[2])};
        });
    }

    setData(xy, cols) {
      const n = xy.length / 2;
      if (cols.labels.length !== n || cols.predictions.length !== n || cols.confidence.length !== n)
        throw new Error("the atlas columns hold " + cols.labels.length + " items but the projection " + n);
      this.n = n;
      this.xy = xy;
      this.cols = cols;
      let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
      for (let i = 0; i < n; i++) {
        const x = xy[2 * i], y = xy[2 * i + 1];
        if (x < minX) minX = x; if (x > maxX) maxX = x;
        if (y < minY) minY = y; if (y > maxY) maxY = y;
      }
      if (!(maxX > minX)) { minX -= 1; maxX += 1; }
      if (!(maxY > minY)) { minY -= 1; maxY += 1; }
      this.bounds = {minX: minX, minY: minY, maxX: maxX, maxY: maxY};
      this.buildGrid();
    }

    // A uniform grid (counting sort of the points by cell) for nearest-point and region queries.
    // Points without coordinates (NaN: images the scan skipped) are in no cell.
    buildGrid() {
      const b = this.bounds, n = this.n;
      const side = Math.max(1, Math.min(512, Math.ceil(Math.sqrt(n / 4))));
      const cw = (b.maxX - b.minX) / side || 1, ch = (b.maxY - b.minY) / side || 1;
      const cellOf = new Int32Array(n), start = new Int32Array(side * side + 1);
      for (let i = 0; i < n; i++) {
        const gx = Math.min(side - 1, Math.floor((this.xy[2 * i] - b.minX) / cw));
        const gy = Math.min(side - 1, Math.floor((this.xy[2 * i + 1] - b.minY) / ch));
        if (!(gx >= 0 && gy >= 0)) { cellOf[i] = -1; continue; }
        const c = gy * side + gx;
        cellOf[i] = c; start[c + 1]++;
      }
      for (let k = 0; k < side * side; k++) start[k + 1] += start[k];
      const fill = start.slice(0, side * side), items = new Int32Array(start[side * side]);
      for (let j = 0; j < n; j++) if (cellOf[j] >= 0) items[fill[cellOf[j]]++] = j;
      this.grid = {side: side, cw: cw, ch: ch, start: start, items: items};
    }

    // Calls fn(i) for each point in the data-space box; fn returning true stops the walk.
    eachIn(x0, y0, x1, y1, fn) {
      const g = this.grid, b = this.bounds, xy = this.xy;
      const gx0 = Math.max(0, Math.floor((x0 - b.minX) / g.cw)), gx1 = Math.min(g.side - 1, Math.floor((x1 - b.minX) / g.cw));
      const gy0 = Math.max(0, Math.floor((y0 - b.minY) / g.ch)), gy1 = Math.min(g.side - 1, Math.floor((y1 - b.minY) / g.ch));
      for (let gy = gy0; gy <= gy1; gy++) {
        for (let gx = gx0; gx <= gx1; gx++) {
          const c = gy * g.side + gx;
          for (let k = g.start[c]; k < g.start[c + 1]; k++) {
            const i = g.items[k], x = xy[2 * i], y = xy[2 * i + 1];
            if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && fn(i)) return;
          }
        }
      }
    }

    // ---- view transform ------------------------------------------------------------------------
    size() { return {w: this.overlay.clientWidth, h: this.overlay.clientHeight}; }
    toScreen(x, y) {
      const s = this.size(), v = this.view;
      return [(x - v.cx) * v.scale + s.w / 2, s.h / 2 - (y - v.cy) * v.scale];
    }
    toData(sx, sy) {
      const s = this.size(), v = this.view;
      return [(sx - s.w / 2) / v.scale + v.cx, (s.h / 2 - sy) / v.scale + v.cy];
    }
    pointOnScreen(i) { return this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]); }
    fit() {
      const b = this.bounds, s = this.size();
      this.view.cx = (b.minX + b.maxX) / 2;
      this.view.cy = (b.minY + b.maxY) / 2;
      this.view.scale = 0.92 * Math.min(s.w / (b.maxX - b.minX), s.h / (b.maxY - b.minY));
      this.fitScale = this.view.scale;
      this.requestRender();
    }
    zoomAt(sx, sy, factor) {
      const before = this.toData(sx, sy);
      this.view.scale = Math.max(this.fitScale / 4, Math.min(this.fitScale * this.maxZoom(), this.view.scale * factor));
      const after = this.toData(sx, sy);
      this.view.cx += before[0] - after[0];
      this.view.cy += before[1] - after[1];
      this.requestRender();
    }
    // Zooming further only shows emptier space: at this zoom the points of even a 100k atlas, a
    // few pixels apart in the fitted view, are hundreds of pixels apart.
    maxZoom() { return Math.max(64, 2 * Math.sqrt(this.n)); }
    pointSize() {   // larger for small atlases and when zoomed in
      const z = this.view.scale / this.fitScale, base = Math.max(2, Math.min(5, 7 - Math.log10(this.n)));
      return Math.min(9, base + Math.log2(Math.max(1, z)) * 0.8);
    }

    // ---- colours -------------------------------------------------------------------------------
    colorOf(i) {
      const c = this.cols;
      switch (this.colorBy) {
        case "prediction": return classColor(c.predictions[i]);
        case "correct":
          if (c.labels[i] < 0 || c.predictions[i] < 0) return UNKNOWN;
          return c.labels[i] === c.predictions[i] ? CORRECT : WRONG;
        case "confidence": return rampColor(c.confidence[i]);
        default: return classColor(c.labels[i]);
      }
    }
    recolor() {
      const n = this.n, rgba = new Uint8Array(4 * n), hl = this.highlight;
      for (let i = 0; i < n; i++) {
        const col = this.colorOf(i), dim = hl && !hl.flags[i];
        for (let k = 0; k < 3; k++) rgba[4 * i + k] = dim ? Math.round(0.25 * col[k] + 0.75 * BG[k]) : col[k];
        rgba[4 * i + 3] = 255;
      }
      this.rgba = rgba;
      this.renderer.setColors(rgba, hl ? hl.list : null);
      this.drawLegend();
      this.requestRender();
    }
    className(c) {   // a class index (or a name already) -> its name
      if (typeof c === "string") return c;
      if (c === null || c === undefined || c < 0) return "unknown";
      return this.classNames && this.classNames[c] !== undefined ? this.classNames[c] : String(c);
    }
    drawLegend() {
      const box = $(".map-legend", this.root);
      box.textContent = "";
      if (this.colorBy === "confidence") {
        box.appendChild(cs.el("div", {class: "legend-title", text: "confidence"}));
        const bar = cs.el("div", {class: "legend-ramp"});
        bar.style.background = "linear-gradient(to right," + RAMP.map(css).join(",") + ")";
        box.appendChild(bar);
        box.appendChild(cs.el("div", {class: "legend-ends"}, cs.el("span", {text: "0"}), cs.el("span", {text: "1"})));
        return;
      }
      if (this.colorBy === "correct") {
        const c = this.cols;
        let right = 0, wrong = 0, unknown = 0;
        for (let i = 0; i < this.n; i++) {
          if (c.labels[i] < 0 || c.predictions[i] < 0) unknown++;
          else if (c.labels[i] === c.predictions[i]) right++; else wrong++;
        }
        box.appendChild(cs.el("div", {class: "legend-title", text: "prediction vs label"}));
        [[CORRECT, "correct", right], [WRONG, "wrong", wrong], [UNKNOWN, "no label", unknown]].forEach((e) => {
          if (e[2]) box.appendChild(this.legendRow(e[0], e[1], e[2]));
        });
        return;
      }
      const column = this.colorBy === "prediction" ? this.cols.predictions : this.cols.labels;
      const counts = new Map();
      for (let j = 0; j < this.n; j++) counts.set(column[j], (counts.get(column[j]) || 0) + 1);
      const keys = Array.from(counts.keys()).sort((a, b) => { return a - b; });
      box.appendChild(cs.el("div", {class: "legend-title", text: this.colorBy === "prediction" ? "prediction" : "label"}));
      keys.slice(0, 30).forEach((k) => {   // a class in the legend, clicked: its points highlighted
        const row = this.legendRow(classColor(k), this.className(k), counts.get(k));
        row.dataset.class = String(k);
        row.classList.add("clickable");
        row.title = "show these on the map";
        row.addEventListener("click", () => {
          const hits = [];
          for (let i = 0; i < this.n; i++) if (column[i] === k) hits.push(i);
          this.setHighlight(hits, this.colorBy + " " + this.className(k));
        });
        box.appendChild(row);
      });
      if (keys.length > 30) box.appendChild(cs.el("div", {class: "legend-more", text: "+" + (keys.length - 30) + " more classes"}));
    }
    legendRow(rgb, name, count) {
      const sw = cs.el("span", {class: "swatch"});
      sw.style.background = css(rgb);
      return cs.el("div", {class: "legend-row"}, sw, cs.el("span", {class: "legend-name", text: name}),
        cs.el("span", {class: "legend-count", text: count.toLocaleString()}));
    }

    setupRenderer() {
      const canvas = $(".map-points", this.root);
      let r = null, want = this.wantRenderer;
      if (want === "auto" && D.softwareGL()) {
        want = "canvas";
        this.root.dataset.rendererReason = "software WebGL";
      }
      if (want !== "canvas") {
        try { r = new D.GLRenderer(canvas); } catch (e) {
          r = null;
          if (want === "webgl") this.notice("WebGL is not available here (" + e.message + "); drawing with Canvas2D");
        }
      }
      if (!r) {   // a canvas that gave out a WebGL context cannot give a 2D one: swap in a fresh one
        const fresh = cs.el("canvas", {class: "map-points"});
        canvas.replaceWith(fresh);
        r = new D.CanvasRenderer(fresh);
      }
      r.setPositions(this.xy);
      this.renderer = r;
      this.root.dataset.renderer = r.name;
      this.resize();
      if (window.ResizeObserver) new ResizeObserver(() => { this.resize(); }).observe($(".map-stage", this.root));
    }
    notice(text) { $(".map-notice", this.root).textContent = text; }
    resize() {
      const dpr = window.devicePixelRatio || 1, s = this.size();
      [this.renderer.canvas, this.overlay].forEach((c) => {
        c.width = Math.max(1, Math.round(s.w * dpr)); c.height = Math.max(1, Math.round(s.h * dpr));
      });
      this.requestRender();
    }
    requestRender() {
      if (this.pending || !this.renderer) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }
    render() {
      const t0 = performance.now(), s = this.size(), dpr = window.devicePixelRatio || 1;
      this.renderer.draw(this, s.w, s.h, dpr);
      this.drawOverlay(s, dpr);
      const ms = performance.now() - t0;
      this.frameTimes.push(ms);
      if (this.frameTimes.length > 500) this.frameTimes.shift();
      this.frames = (this.frames || 0) + 1;
    }

    // One frame drawn at once and finished on the GPU too (readPixels waits for it): what a frame
    // really costs, for the tests and benchmarks (requestAnimationFrame frames are timed on the CPU).
    renderNow() {
      const t0 = performance.now();
      this.render();
      const gl = this.renderer.gl;
      if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
      return performance.now() - t0;
    }

    // ---- overlay: thumbnails, hover ring, selection outline --------------------------------------
    visiblePoints(limit) {
      const a = this.toData(0, this.size().h), b = this.toData(this.size().w, 0), out = [];
      this.eachIn(a[0], a[1], b[0], b[1], (i) => { out.push(i); return out.length > limit; });
      return out;
    }
    tileOf(i) {
      const per = this.tileSide * this.tileSide, r = i % per;
      return {t: Math.floor(i / per), sx: (r % this.tileSide) * this.thumb, sy: Math.floor(r / this.tileSide) * this.thumb};
    }
    tile(t) {
      let entry = this.tiles.get(t);
      if (!entry) {
        entry = {img: new Image(), ready: false};
        entry.img.onload = () => { entry.ready = true; this.requestRender(); };
        entry.img.onerror = () => { entry.failed = true; };
        entry.img.src = this.base + "/tiles/" + t + ".png";
        this.tiles.set(t, entry);
      }
      return entry;
    }
    thumbPx() { return Math.max(20, Math.min(64, this.thumb * 1.5)); }
    drawOverlay(s, dpr) {
      const ctx = this.overlay.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, s.w, s.h);
      const vis = this.visiblePoints(THUMB_MAX_VISIBLE);
      this.visible = vis.length;
      this.mode = vis.length <= THUMB_MAX_VISIBLE && this.view.scale > this.fitScale * 1.5 ? "thumbs" : "dots";
      this.root.dataset.mode = this.mode;
      if (this.mode === "thumbs") {
        const size = this.thumbPx(), half = size / 2, hl = this.highlight;
        ctx.imageSmoothingEnabled = false;
        for (let k = 0; k < vis.length; k++) {
          const i = vis[k], p = this.pointOnScreen(i), at = this.tileOf(i), tile = this.tile(at.t);
          if (!tile.ready) continue;
          ctx.globalAlpha = hl && !hl.flags[i] ? 0.25 : 1;   // a search or confusion cell dims the rest
          ctx.drawImage(tile.img, at.sx, at.sy, this.thumb, this.thumb, p[0] - half, p[1] - half, size, size);
          ctx.lineWidth = hl && hl.flags[i] ? 3 : 1.5;
          ctx.strokeStyle = "rgb(" + this.rgba[4 * i] + "," + this.rgba[4 * i + 1] + "," + this.rgba[4 * i + 2] + ")";
          ctx.strokeRect(p[0] - half, p[1] - half, size, size);
        }
        ctx.globalAlpha = 1;
      }
      if (this.hover >= 0) {
        const h = this.pointOnScreen(this.hover);
        ctx.beginPath(); ctx.arc(h[0], h[1], 7, 0, 2 * Math.PI);
        ctx.lineWidth = 2; ctx.strokeStyle = "#111"; ctx.stroke();
      }
      if (this.opened !== undefined && this.opened >= 0) {
        const o = this.pointOnScreen(this.opened);
        ctx.beginPath(); ctx.arc(o[0], o[1], 9, 0, 2 * Math.PI);
        ctx.lineWidth = 2.5; ctx.strokeStyle = "#e4572e"; ctx.stroke();
      }
      if (this.drag && this.drag.path && this.drag.path.length > 1) {
        const path = this.drag.path;
        ctx.beginPath(); ctx.moveTo(path[0][0], path[0][1]);
        for (let j = 1; j < path.length; j++) ctx.lineTo(path[j][0], path[j][1]);
        ctx.closePath();
        ctx.fillStyle = "rgba(30,100,200,0.12)"; ctx.fill();
        ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5; ctx.strokeStyle = "#1e64c8"; ctx.stroke(); ctx.setLineDash([]);
      }
    }

    // ---- pointer: pan, zoom, hover, click, box and lasso ----------------------------------------
    nearest(sx, sy) {   // in thumbnail mode, anywhere on a thumbnail
      const px = this.mode === "thumbs" ? Math.max(PICK_RADIUS, this.thumbPx() / 2) : PICK_RADIUS;
      const r = px / this.view.scale, c = this.toData(sx, sy), xy = this.xy;
      let best = -1, bestD = r * r;
      this.eachIn(c[0] - r, c[1] - r, c[0] + r, c[1] + r, (i) => {
        const dx = xy[2 * i] - c[0], dy = xy[2 * i + 1] - c[1], dd = dx * dx + dy * dy;
        if (dd <= bestD) { bestD = dd; best = i; }
      });
      return best;
    }
    bindPointer() {
      const o = this.overlay;
      const local = (e) => { const r = o.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
      o.addEventListener("wheel", (e) => {
        e.preventDefault();
        const p = local(e);
        this.zoomAt(p[0], p[1], Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
        this.hoverAt(p);   // the points moved under the pointer: the tooltip follows (or goes)
      }, {passive: false});
      o.addEventListener("pointerdown", (e) => {
        if (e.button !== 0) return;
        const p = local(e);
        o.setPointerCapture(e.pointerId);
        const tool = e.shiftKey && this.tool === "pan" ? "box" : this.tool;
        this.drag = {tool: tool, start: p, last: p, moved: false, path: tool === "pan" ? null : [p]};
        this.hover = -1;
        this.hideTip();
      });
      o.addEventListener("pointermove", (e) => {
        const p = local(e), d = this.drag;
        if (!d) { this.hoverAt(p); return; }
        if (Math.abs(p[0] - d.start[0]) + Math.abs(p[1] - d.start[1]) > 3) d.moved = true;
        if (d.tool === "pan") {
          this.view.cx -= (p[0] - d.last[0]) / this.view.scale;
          this.view.cy += (p[1] - d.last[1]) / this.view.scale;
        } else if (d.tool === "box") {
          const a = d.start;
          d.path = [a, [p[0], a[1]], p, [a[0], p[1]]];
        } else {
          d.path.push(p);
        }
        d.last = p;
        this.requestRender();
      });
      const end = (e) => {
        const d = this.drag;
        if (!d) return;
        this.drag = null;
        if (!d.moved) { const i = this.nearest(d.start[0], d.start[1]); if (i >= 0) this.openPoint(i); }
        else if (d.tool !== "pan" && d.path.length > 2) this.select(this.inside(d.path));
        this.requestRender();
        if (e && e.type === "pointerup") this.hoverAt(local(e));
      };
      o.addEventListener("pointerup", end);
      o.addEventListener("dblclick", (e) => { const p = local(e); this.zoomAt(p[0], p[1], e.shiftKey ? 0.5 : 2); });
      document.addEventListener("keydown", (e) => {   // Escape drops a lasso or box being drawn
        if (e.key === "Escape" && this.drag) { this.drag = null; this.requestRender(); }
      });
      o.addEventListener("pointercancel", () => { this.drag = null; this.requestRender(); });
      o.addEventListener("pointerleave", () => { if (!this.drag) { this.hover = -1; this.hideTip(); this.requestRender(); } });
    }

    // Indices of the points inside a screen-space polygon (the lasso, or the box's 4 corners).
    inside(path) {
      const poly = path.map((p) => this.toData(p[0], p[1]));
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      poly.forEach((p) => {
        x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
      });
      const xy = this.xy, out = [], m = poly.length;
      this.eachIn(x0, y0, x1, y1, (i) => {
        const x = xy[2 * i], y = xy[2 * i + 1];
        let inPoly = false;
        for (let a = 0, b = m - 1; a < m; b = a++) {
          const pa = poly[a], pb = poly[b];
          const crosses = (pa[1] > y) !== (pb[1] > y);   // even-odd rule
          if (crosses && x < (pb[0] - pa[0]) * (y - pa[1]) / (pb[1] - pa[1]) + pa[0]) inPoly = !inPoly;
        }
        if (inPoly) out.push(i);
      });
      return Int32Array.from(out).sort();
    }

    hoverAt(p) {
      const i = this.nearest(p[0], p[1]);
      if (i !== this.hover) { this.hover = i; this.requestRender(); }
      if (i < 0) { this.hideTip(); return; }
      this.showTip(i, p);
    }
    hideTip() { this.tip.hidden = true; }
    thumbFromTile(i, scale) {
      // The thumbnail cut out of its tile with CSS: one tile image serves every thumbnail in it
      // (hover, selection grid), so a selection of hundreds costs a few requests.
      const at = this.tileOf(i), side = this.tileSide * this.thumb;
      const img = cs.el("img", {src: this.base + "/tiles/" + at.t + ".png", alt: "image " + i, class: "tile-img"});
      img.style.width = side * scale + "px";   // the height follows: a tile has only the rows it fills
      img.style.left = -at.sx * scale + "px";
      img.style.top = -at.sy * scale + "px";
      const box = cs.el("div", {class: "thumb-crop"}, img);
      box.style.width = box.style.height = this.thumb * scale + "px";
      return box;
    }
    describe(i) {
      const c = this.cols, conf = c.confidence[i];
      return "label " + this.className(c.labels[i]) + " · predicted " + this.className(c.predictions[i]) +
        (conf >= 0 ? " (" + conf.toFixed(2) + ")" : "");
    }
    showTip(i, p) {
      const tip = this.tip;
      if (tip.dataset.index !== String(i)) {
        tip.dataset.index = String(i);
        tip.textContent = "";
        tip.appendChild(this.thumbFromTile(i, Math.max(1, Math.round(72 / this.thumb))));
        tip.appendChild(cs.el("div", {class: "tip-text", text: "#" + i + " · " + this.describe(i)}));
        const file = cs.el("div", {class: "tip-file", text: "…"});
        tip.appendChild(file);
        // the file name is asked for once the pointer rests on the point
        clearTimeout(this.tipTimer);
        this.tipTimer = setTimeout(() => {
          if (tip.dataset.index !== String(i)) return;
          this.source(i).then((src) => { if (tip.dataset.index === String(i)) file.textContent = src; });
        }, 120);
      }
      tip.hidden = false;
      const s = this.size(), w = tip.offsetWidth, h = tip.offsetHeight;
      tip.style.left = Math.min(s.w - w - 4, p[0] + 14) + "px";
      tip.style.top = Math.max(4, Math.min(s.h - h - 4, p[1] + 14)) + "px";
    }
    source(i) {
      this.sources = this.sources || new Map();
      if (!this.sources.has(i)) {
        this.sources.set(i, this.items([i]).then((rows) => { return rows.length ? String(rows[0].source) : ""; },
                                                 () => { return ""; }));
      }
      return this.sources.get(i);
    }
    items(indices) {
      return api(this.base + "/items", {json: {indices: Array.from(indices)}}).then((d) => {
        return Array.isArray(d) ? d : (d.items || d.rows || []);
      });
    }

    // ---- highlight (search, confusion cell) ------------------------------------------------------
    setHighlight(indices, what) {
      const box = $(".map-highlight", this.root);
      box.textContent = "";
      if (!indices) {
        this.highlight = null;
        box.hidden = true;
      } else {
        const flags = new Uint8Array(this.n), list = [];
        for (let k = 0; k < indices.length; k++) {
          const i = indices[k];
          if (i >= 0 && i < this.n && !flags[i]) { flags[i] = 1; list.push(i); }
        }
        this.highlight = {flags: flags, list: Int32Array.from(list), what: what};
        const clear = cs.el("button", {type: "button", class: "link", text: "clear"});
        clear.addEventListener("click", () => {
          this.setHighlight(null);
          setQuery("q", null);
          $(".map-search input", this.root).value = "";
        });
        box.appendChild(cs.el("span", {class: "hl-count", text: list.length.toLocaleString() + " highlighted"}));
        box.appendChild(cs.el("span", {text: " · " + what + " "}));
        box.appendChild(clear);
        box.hidden = false;
      }
      this.root.dataset.highlighted = this.highlight ? String(this.highlight.list.length) : "0";
      this.recolor();
    }
    search(q) {
      q = q.trim();
      setQuery("q", q || null);
      if (!q) { this.setHighlight(null); return Promise.resolve(); }
      return api(this.base + "/search?q=" + encodeURIComponent(q)).then((d) => {
        this.setHighlight(d.indices, "search “" + q + "”");
      }).catch((err) => { showError($(".map-highlight", this.root), err.message); });
    }

    // ---- selection: grid, counts, export ---------------------------------------------------------
    select(indices) {
      const panel = $(".map-selection", this.root);
      this.selection = indices;
      this.root.dataset.selected = String(indices.length);
      panel.hidden = false;
      const body = $(".selection-body", panel);
      body.textContent = "";
      $(".selection-title", panel).textContent = indices.length.toLocaleString() + " selected";
      if (!indices.length) return Promise.resolve();
      body.appendChild(this.countsTable(indices));
      const grid = cs.el("div", {class: "selection-grid"});
      body.appendChild(grid);
      const shown = indices.subarray(0, GRID_ITEMS);
      if (indices.length > GRID_ITEMS)
        body.appendChild(cs.el("p", {class: "muted", text: "showing the first " + GRID_ITEMS + " of " + indices.length.toLocaleString()}));
      return this.items(shown).then((rows) => {
        rows.forEach((row) => {
          const label = this.className(row.label), pred = this.className(row.prediction);
          const cell = cs.el("figure", {class: "sel-item" + (label === pred ? "" : " wrong"), "data-index": row.index,
                                   title: row.source},
            this.thumbFromTile(row.index, 52 / this.thumb), cs.el("figcaption", {text: label + " → " + pred}));
          cell.addEventListener("click", () => { this.openPoint(row.index); });
          grid.appendChild(cell);
        });
      }).catch((err) => { showError(grid, err.message); });
    }
    countsTable(indices) {
      const c = this.cols;
      const count = (column) => {
        const m = new Map();
        for (let k = 0; k < indices.length; k++) { const v = column[indices[k]]; m.set(v, (m.get(v) || 0) + 1); }
        return Array.from(m.entries()).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      };
      const box = cs.el("div", {class: "selection-counts"});
      [["label", c.labels], ["prediction", c.predictions]].forEach((pair) => {
        const table = cs.el("table", {class: "counts", "data-column": pair[0]},
          cs.el("thead", {}, cs.el("tr", {}, cs.el("th", {text: pair[0]}), cs.el("th", {text: "count"}))));
        const tb = cs.el("tbody");
        count(pair[1]).forEach((e) => {
          const sw = cs.el("span", {class: "swatch"});
          sw.style.background = css(classColor(e[0]));
          tb.appendChild(cs.el("tr", {"data-class": String(e[0])}, cs.el("td", {}, sw, document.createTextNode(this.className(e[0]))),
            cs.el("td", {class: "num", text: String(e[1])})));
        });
        table.appendChild(tb);
        box.appendChild(table);
      });
      return box;
    }
    exportSelection(format) {
      if (!this.selection || !this.selection.length) return;
      const url = this.base + "/" + encodeURIComponent(this.layer) + "/export?format=" + format;
      const body = {indices: Array.from(this.selection), method: this.method};
      if (this.alignTo) body.align_to = this.alignTo;
      return download(url, body, this.id + "-" + this.layer + "-selection." + format)
        .catch((err) => { showError($(".selection-body", this.root), err.message); });
    }

    // ---- confusion matrix ------------------------------------------------------------------------
    toggleConfusion() {
      const panel = $(".map-confusion", this.root);
      panel.hidden = !panel.hidden;
      if (panel.hidden || panel.dataset.loaded) return Promise.resolve();
      panel.dataset.loaded = "1";
      const body = $(".confusion-body", panel);
      return api(this.base + "/confusion").then((d) => {
        const names = d.class_names || [], m = d.matrix;
        let max = 0;
        m.forEach((row) => { row.forEach((v) => { max = Math.max(max, v); }); });
        const head = cs.el("tr", {}, cs.el("th", {class: "corner", text: "true ↓ pred →"}));
        names.forEach((nm) => { head.appendChild(cs.el("th", {text: nm})); });
        const table = cs.el("table", {class: "confusion"}, cs.el("thead", {}, head)), tb = cs.el("tbody");
        m.forEach((row, t) => {
          const tr = cs.el("tr", {}, cs.el("th", {text: names[t] !== undefined ? names[t] : String(t)}));
          row.forEach((v, p) => {
            const td = cs.el("td", {text: String(v), "data-true": t, "data-pred": p, class: t === p ? "diag" : "off"});
            const a = max ? v / max : 0;
            if (t === p) td.style.background = "rgba(44,160,44," + (0.1 + 0.8 * a) + ")";
            else if (v) td.style.background = "rgba(214,39,40," + (0.15 + 0.85 * Math.sqrt(a)) + ")";
            if (v) td.addEventListener("click", () => { this.confusionCell(t, p, names); });
            else td.classList.add("empty");
            tr.appendChild(td);
          });
          tb.appendChild(tr);
        });
        table.appendChild(tb);
        body.textContent = "";
        body.appendChild(table);
      }).catch((err) => { panel.dataset.loaded = ""; showError(body, err.message); });
    }
    confusionCell(t, p, names) {
      $$(".confusion td.active", this.root).forEach((td) => { td.classList.remove("active"); });
      const td = $('.confusion td[data-true="' + t + '"][data-pred="' + p + '"]', this.root);
      if (td) td.classList.add("active");
      return api(this.base + "/confusion/" + t + "/" + p).then((d) => {
        this.setHighlight(d.indices, "true " + (names[t] || t) + " predicted " + (names[p] || p));
      }).catch((err) => { showError($(".confusion-body", this.root), err.message); });
    }
    // ---- one point: details, explain link, neighbours --------------------------------------------
    openPoint(i) {
      if (!(i >= 0 && i < this.n)) return;
      const panel = $(".map-point", this.root);
      this.opened = i;
      this.root.dataset.point = String(i);
      setQuery("point", i);
      panel.hidden = false;
      const body = $(".point-body", panel);
      body.textContent = "";
      const file = cs.el("div", {class: "point-file", text: "…"});
      const explain = cs.el("a", {class: "button explain-link", text: "explain",
                             href: cs.explainUrl("atlas:" + this.id + "/" + i, this.info && this.info.served_model)});
      body.appendChild(cs.el("div", {class: "point-head"},
        cs.el("img", {class: "point-thumb", src: this.base + "/thumbs/" + i + ".png", alt: "image " + i}),
        cs.el("div", {}, cs.el("div", {class: "point-title", text: "#" + i}), cs.el("div", {text: this.describe(i)}), file, explain)));
      this.source(i).then((src) => { file.textContent = src; });
      const nb = cs.el("div", {class: "neighbors-panel"});
      body.appendChild(nb);
      nb.addEventListener("cs-neighbor", (e) => { this.openPoint(e.detail.index); });   // walk on
      if (window.csNeighbors) window.csNeighbors.show(nb, this.id, this.layer, {index: i});
      else nb.appendChild(cs.el("p", {class: "muted", text: "Neighbours are not available in this build."}));
      this.requestRender();
    }

    // ---- controls ------------------------------------------------------------------------------
    buildControls() {
      const root = this.root;
      this.overlay = $(".map-overlay", root);
      this.tip = $(".map-tip", root);
      const color = $("select[name=color]", root);
      color.value = this.colorBy;
      color.addEventListener("change", () => {
        this.colorBy = color.value;
        setQuery("color", color.value);
        if (this.renderer) this.recolor();
      });
      $$("select[data-navigate]", root).forEach((sel) => {
        sel.addEventListener("change", () => {   // method and layer make a new address
          const layer = $("select[name=layer]", root), method = $("select[name=method]", root);
          const url = new URL(window.location.href);
          url.pathname = "/atlas/" + encodeURIComponent(this.id) + "/" + encodeURIComponent(layer ? layer.value : this.layer);
          url.searchParams.set("method", method.value);
          url.searchParams.delete("point");
          window.location.assign(url.toString());
        });
      });
      $$(".map-tools button[data-tool]", root).forEach((b) => {
        b.addEventListener("click", () => {
          this.tool = b.dataset.tool;
          root.dataset.tool = this.tool;
          $$(".map-tools button[data-tool]", root).forEach((o) => { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
        });
      });
      $(".map-fit", root).addEventListener("click", () => { if (this.bounds) this.fit(); });
      $(".map-search", root).addEventListener("submit", (e) => {
        e.preventDefault();
        if (this.renderer) this.search($(".map-search input", root).value);
      });
      $(".map-confusion-toggle", root).addEventListener("click", () => { this.toggleConfusion(); });
      $$(".map-export", root).forEach((b) => {
        b.addEventListener("click", () => { this.exportSelection(b.dataset.format); });
      });
      $(".selection-clear", root).addEventListener("click", () => {
        this.selection = null; root.dataset.selected = "0";
        $(".map-selection", root).hidden = true;
      });
      $(".point-close", root).addEventListener("click", () => {
        $(".map-point", root).hidden = true; this.opened = -1; setQuery("point", null); this.requestRender();
      });
    }
  }

  function boot() {
    const root = document.getElementById("atlas-map");
    if (!root) return;
    const map = new AtlasMap(root);
    window.csMap = map;
    map.start();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
