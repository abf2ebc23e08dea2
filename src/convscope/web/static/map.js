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
(function () {
  "use strict";

  var D = window.csMapDraw;   // static/map_draw.js
  var BG = D.BG, UNKNOWN = D.UNKNOWN, CORRECT = D.CORRECT, WRONG = D.WRONG, RAMP = D.RAMP, css = D.css;
  var classColor = D.classColor, rampColor = D.rampColor;
  var THUMB_MAX_VISIBLE = 600;   // at most this many points in view -> thumbnails in place of dots
  var GRID_ITEMS = 240;          // thumbnails shown in the selection grid
  var PICK_RADIUS = 10;          // CSS px around the pointer that count as "on a point"

  // ---- small helpers -------------------------------------------------------------------------
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, attrs, children) {   // cs.el, with the children as a list (empty ones left out)
    return cs.el.apply(null, [tag, attrs || {}].concat((children || []).filter(Boolean)));
  }
  var api = cs.api, showError = cs.showError;
  function binary(url) {
    return fetch(url).then(function (r) {
      if (r.ok) return r.arrayBuffer();
      return r.text().then(function (text) {
        var msg = text;
        try { msg = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
        throw new Error(msg || (r.status + " " + url));
      });
    });
  }
  function download(url, json, filename) {
    return fetch(url, {method: "POST", body: JSON.stringify(json), headers: {"Content-Type": "application/json"}})
      .then(function (r) {
        if (!r.ok) return r.json().then(function (d) { throw new Error(d.error || r.statusText); });
        return r.blob();
      }).then(function (blob) {
        var a = el("a", {href: URL.createObjectURL(blob), download: filename});
        document.body.appendChild(a); a.click(); a.remove();
        setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
      });
  }
  function setQuery(key, value) {
    var url = new URL(window.location.href);
    if (value === null || value === undefined || value === "") url.searchParams.delete(key);
    else url.searchParams.set(key, value);
    history.replaceState(null, "", url.toString());
  }

  // ---- the map -------------------------------------------------------------------------------
  function AtlasMap(root) {
    var d = root.dataset;
    this.root = root;
    this.id = d.atlas;
    this.layer = d.layer;
    this.method = d.method || "pca";
    this.alignTo = d.alignTo || "";
    this.base = "/api/atlas/" + encodeURIComponent(this.id);
    var query = new URL(window.location.href).searchParams;
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

  AtlasMap.prototype.start = function () {
    var self = this;
    this.buildControls();
    var info = this.info ? Promise.resolve(this.info) : api(this.base + "/info");
    return info.then(function (info) {
      self.info = info;
      self.tileSide = info.tile_side;
      self.thumb = info.thumb_size;
      self.classNames = info.class_names || null;
      return Promise.all([self.projection(), self.columns()]);
    }).then(function (parts) {
      self.setData(new Float32Array(parts[0]), parts[1]);
      self.setupRenderer();
      self.bindPointer();
      self.recolor();
      self.fit();
      self.root.dataset.state = "ready";
      self.say(self.n.toLocaleString() + " points");
      var q = new URL(window.location.href).searchParams;
      if (q.get("q")) { $(".map-search input", self.root).value = q.get("q"); self.search(q.get("q")); }
      if (q.get("point") !== null && q.get("point") !== "") self.openPoint(parseInt(q.get("point"), 10));
    }).catch(function (err) {
      self.root.dataset.state = "error";
      showError(self.status, err.message);
    });
  };

  AtlasMap.prototype.say = function (text) { this.status.classList.remove("cs-error"); this.status.textContent = text; };

  // The projection is a (cached) job on the server: POST it, follow its progress, then fetch the
  // coordinates as raw float32 pairs.
  AtlasMap.prototype.projection = function () {
    var self = this, progress = $(".map-progress", this.root);
    var layerBase = this.base + "/" + encodeURIComponent(this.layer);
    var coordsUrl = layerBase + "/projection/" + encodeURIComponent(this.method) + "/coords" +
      (this.alignTo ? "?align_to=" + encodeURIComponent(this.alignTo) : "");
    this.say("Computing the " + this.method.toUpperCase() + " projection…");
    progress.hidden = false;
    return cs.run(layerBase + "/projection", {method: this.method, align_to: this.alignTo || null}, progress)
      .then(function (job) {
        self.jobStatus = job.status;
        if (job.status !== "done") throw new Error(job.error || "the projection was " + job.status);
        progress.hidden = true;
        return binary(coordsUrl);
      });
  };

  AtlasMap.prototype.columns = function () {
    var b = this.base + "/columns/";
    return Promise.all([binary(b + "labels"), binary(b + "predictions"), binary(b + "confidence")])
      .then(function (c) {
        return {labels: new Int32Array(c[0]), predictions: new Int32Array(c[1]), confidence: new Float32Array(c[2])};
      });
  };

  AtlasMap.prototype.setData = function (xy, cols) {
    var n = xy.length / 2;
    if (cols.labels.length !== n || cols.predictions.length !== n || cols.confidence.length !== n)
      throw new Error("the atlas columns hold " + cols.labels.length + " items but the projection " + n);
    this.n = n;
    this.xy = xy;
    this.cols = cols;
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (var i = 0; i < n; i++) {
      var x = xy[2 * i], y = xy[2 * i + 1];
      if (x < minX) minX = x; if (x > maxX) maxX = x;
      if (y < minY) minY = y; if (y > maxY) maxY = y;
    }
    if (!(maxX > minX)) { minX -= 1; maxX += 1; }
    if (!(maxY > minY)) { minY -= 1; maxY += 1; }
    this.bounds = {minX: minX, minY: minY, maxX: maxX, maxY: maxY};
    this.buildGrid();
  };

  // A uniform grid (counting sort of the points by cell) for nearest-point and region queries.
  // Points without coordinates (NaN: images the scan skipped) are in no cell.
  AtlasMap.prototype.buildGrid = function () {
    var b = this.bounds, n = this.n;
    var side = Math.max(1, Math.min(512, Math.ceil(Math.sqrt(n / 4))));
    var cw = (b.maxX - b.minX) / side || 1, ch = (b.maxY - b.minY) / side || 1;
    var cellOf = new Int32Array(n), start = new Int32Array(side * side + 1);
    for (var i = 0; i < n; i++) {
      var gx = Math.min(side - 1, Math.floor((this.xy[2 * i] - b.minX) / cw));
      var gy = Math.min(side - 1, Math.floor((this.xy[2 * i + 1] - b.minY) / ch));
      if (!(gx >= 0 && gy >= 0)) { cellOf[i] = -1; continue; }
      var c = gy * side + gx;
      cellOf[i] = c; start[c + 1]++;
    }
    for (var k = 0; k < side * side; k++) start[k + 1] += start[k];
    var fill = start.slice(0, side * side), items = new Int32Array(start[side * side]);
    for (var j = 0; j < n; j++) if (cellOf[j] >= 0) items[fill[cellOf[j]]++] = j;
    this.grid = {side: side, cw: cw, ch: ch, start: start, items: items};
  };

  // Calls fn(i) for each point in the data-space box; fn returning true stops the walk.
  AtlasMap.prototype.eachIn = function (x0, y0, x1, y1, fn) {
    var g = this.grid, b = this.bounds, xy = this.xy;
    var gx0 = Math.max(0, Math.floor((x0 - b.minX) / g.cw)), gx1 = Math.min(g.side - 1, Math.floor((x1 - b.minX) / g.cw));
    var gy0 = Math.max(0, Math.floor((y0 - b.minY) / g.ch)), gy1 = Math.min(g.side - 1, Math.floor((y1 - b.minY) / g.ch));
    for (var gy = gy0; gy <= gy1; gy++) {
      for (var gx = gx0; gx <= gx1; gx++) {
        var c = gy * g.side + gx;
        for (var k = g.start[c]; k < g.start[c + 1]; k++) {
          var i = g.items[k], x = xy[2 * i], y = xy[2 * i + 1];
          if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && fn(i)) return;
        }
      }
    }
  };

  // ---- view transform ------------------------------------------------------------------------
  AtlasMap.prototype.size = function () { return {w: this.overlay.clientWidth, h: this.overlay.clientHeight}; };
  AtlasMap.prototype.toScreen = function (x, y) {
    var s = this.size(), v = this.view;
    return [(x - v.cx) * v.scale + s.w / 2, s.h / 2 - (y - v.cy) * v.scale];
  };
  AtlasMap.prototype.toData = function (sx, sy) {
    var s = this.size(), v = this.view;
    return [(sx - s.w / 2) / v.scale + v.cx, (s.h / 2 - sy) / v.scale + v.cy];
  };
  AtlasMap.prototype.pointOnScreen = function (i) { return this.toScreen(this.xy[2 * i], this.xy[2 * i + 1]); };
  AtlasMap.prototype.fit = function () {
    var b = this.bounds, s = this.size();
    this.view.cx = (b.minX + b.maxX) / 2;
    this.view.cy = (b.minY + b.maxY) / 2;
    this.view.scale = 0.92 * Math.min(s.w / (b.maxX - b.minX), s.h / (b.maxY - b.minY));
    this.fitScale = this.view.scale;
    this.requestRender();
  };
  AtlasMap.prototype.zoomAt = function (sx, sy, factor) {
    var before = this.toData(sx, sy);
    this.view.scale = Math.max(this.fitScale / 4, Math.min(this.fitScale * this.maxZoom(), this.view.scale * factor));
    var after = this.toData(sx, sy);
    this.view.cx += before[0] - after[0];
    this.view.cy += before[1] - after[1];
    this.requestRender();
  };
  // Zooming further only shows emptier space: at this zoom the points of even a 100k atlas, a
  // few pixels apart in the fitted view, are hundreds of pixels apart.
  AtlasMap.prototype.maxZoom = function () { return Math.max(64, 2 * Math.sqrt(this.n)); };
  AtlasMap.prototype.pointSize = function () {   // larger for small atlases and when zoomed in
    var z = this.view.scale / this.fitScale, base = Math.max(2, Math.min(5, 7 - Math.log10(this.n)));
    return Math.min(9, base + Math.log2(Math.max(1, z)) * 0.8);
  };

  // ---- colours -------------------------------------------------------------------------------
  AtlasMap.prototype.colorOf = function (i) {
    var c = this.cols;
    switch (this.colorBy) {
      case "prediction": return classColor(c.predictions[i]);
      case "correct":
        if (c.labels[i] < 0 || c.predictions[i] < 0) return UNKNOWN;
        return c.labels[i] === c.predictions[i] ? CORRECT : WRONG;
      case "confidence": return rampColor(c.confidence[i]);
      default: return classColor(c.labels[i]);
    }
  };
  AtlasMap.prototype.recolor = function () {
    var n = this.n, rgba = new Uint8Array(4 * n), hl = this.highlight;
    for (var i = 0; i < n; i++) {
      var col = this.colorOf(i), dim = hl && !hl.flags[i];
      for (var k = 0; k < 3; k++) rgba[4 * i + k] = dim ? Math.round(0.25 * col[k] + 0.75 * BG[k]) : col[k];
      rgba[4 * i + 3] = 255;
    }
    this.rgba = rgba;
    this.renderer.setColors(rgba, hl ? hl.list : null);
    this.drawLegend();
    this.requestRender();
  };
  AtlasMap.prototype.className = function (c) {   // a class index (or a name already) -> its name
    if (typeof c === "string") return c;
    if (c === null || c === undefined || c < 0) return "unknown";
    return this.classNames && this.classNames[c] !== undefined ? this.classNames[c] : String(c);
  };
  AtlasMap.prototype.drawLegend = function () {
    var box = $(".map-legend", this.root), self = this;
    box.textContent = "";
    if (this.colorBy === "confidence") {
      box.appendChild(el("div", {class: "legend-title", text: "confidence"}));
      var bar = el("div", {class: "legend-ramp"});
      bar.style.background = "linear-gradient(to right," + RAMP.map(css).join(",") + ")";
      box.appendChild(bar);
      box.appendChild(el("div", {class: "legend-ends"}, [el("span", {text: "0"}), el("span", {text: "1"})]));
      return;
    }
    if (this.colorBy === "correct") {
      var right = 0, wrong = 0, unknown = 0, c = this.cols;
      for (var i = 0; i < this.n; i++) {
        if (c.labels[i] < 0 || c.predictions[i] < 0) unknown++;
        else if (c.labels[i] === c.predictions[i]) right++; else wrong++;
      }
      box.appendChild(el("div", {class: "legend-title", text: "prediction vs label"}));
      [[CORRECT, "correct", right], [WRONG, "wrong", wrong], [UNKNOWN, "no label", unknown]].forEach(function (e) {
        if (e[2]) box.appendChild(self.legendRow(e[0], e[1], e[2]));
      });
      return;
    }
    var column = this.colorBy === "prediction" ? this.cols.predictions : this.cols.labels;
    var counts = new Map();
    for (var j = 0; j < this.n; j++) counts.set(column[j], (counts.get(column[j]) || 0) + 1);
    var keys = Array.from(counts.keys()).sort(function (a, b) { return a - b; });
    box.appendChild(el("div", {class: "legend-title", text: this.colorBy === "prediction" ? "prediction" : "label"}));
    keys.slice(0, 30).forEach(function (k) {   // a class in the legend, clicked: its points highlighted
      var row = self.legendRow(classColor(k), self.className(k), counts.get(k));
      row.dataset.class = String(k);
      row.classList.add("clickable");
      row.title = "show these on the map";
      row.addEventListener("click", function () {
        var hits = [];
        for (var i = 0; i < self.n; i++) if (column[i] === k) hits.push(i);
        self.setHighlight(hits, self.colorBy + " " + self.className(k));
      });
      box.appendChild(row);
    });
    if (keys.length > 30) box.appendChild(el("div", {class: "legend-more", text: "+" + (keys.length - 30) + " more classes"}));
  };
  AtlasMap.prototype.legendRow = function (rgb, name, count) {
    var sw = el("span", {class: "swatch"});
    sw.style.background = css(rgb);
    return el("div", {class: "legend-row"}, [sw, el("span", {class: "legend-name", text: name}),
      el("span", {class: "legend-count", text: count.toLocaleString()})]);
  };

  AtlasMap.prototype.setupRenderer = function () {
    var canvas = $(".map-points", this.root);
    var r = null, want = this.wantRenderer;
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
      var fresh = el("canvas", {class: "map-points"});
      canvas.replaceWith(fresh);
      r = new D.CanvasRenderer(fresh);
    }
    r.setPositions(this.xy);
    this.renderer = r;
    this.root.dataset.renderer = r.name;
    this.resize();
    var self = this;
    if (window.ResizeObserver) new ResizeObserver(function () { self.resize(); }).observe($(".map-stage", this.root));
  };
  AtlasMap.prototype.notice = function (text) { $(".map-notice", this.root).textContent = text; };
  AtlasMap.prototype.resize = function () {
    var dpr = window.devicePixelRatio || 1, s = this.size();
    [this.renderer.canvas, this.overlay].forEach(function (c) {
      c.width = Math.max(1, Math.round(s.w * dpr)); c.height = Math.max(1, Math.round(s.h * dpr));
    });
    this.requestRender();
  };
  AtlasMap.prototype.requestRender = function () {
    if (this.pending || !this.renderer) return;
    this.pending = true;
    var self = this;
    requestAnimationFrame(function () { self.pending = false; self.render(); });
  };
  AtlasMap.prototype.render = function () {
    var t0 = performance.now(), s = this.size(), dpr = window.devicePixelRatio || 1;
    this.renderer.draw(this, s.w, s.h, dpr);
    this.drawOverlay(s, dpr);
    var ms = performance.now() - t0;
    this.frameTimes.push(ms);
    if (this.frameTimes.length > 500) this.frameTimes.shift();
    this.frames = (this.frames || 0) + 1;
  };

  // One frame drawn at once and finished on the GPU too (readPixels waits for it): what a frame
  // really costs, for the tests and benchmarks (requestAnimationFrame frames are timed on the CPU).
  AtlasMap.prototype.renderNow = function () {
    var t0 = performance.now();
    this.render();
    var gl = this.renderer.gl;
    if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
    return performance.now() - t0;
  };

  // ---- overlay: thumbnails, hover ring, selection outline --------------------------------------
  AtlasMap.prototype.visiblePoints = function (limit) {
    var a = this.toData(0, this.size().h), b = this.toData(this.size().w, 0), out = [];
    this.eachIn(a[0], a[1], b[0], b[1], function (i) { out.push(i); return out.length > limit; });
    return out;
  };
  AtlasMap.prototype.tileOf = function (i) {
    var per = this.tileSide * this.tileSide, r = i % per;
    return {t: Math.floor(i / per), sx: (r % this.tileSide) * this.thumb, sy: Math.floor(r / this.tileSide) * this.thumb};
  };
  AtlasMap.prototype.tile = function (t) {
    var entry = this.tiles.get(t), self = this;
    if (!entry) {
      entry = {img: new Image(), ready: false};
      entry.img.onload = function () { entry.ready = true; self.requestRender(); };
      entry.img.onerror = function () { entry.failed = true; };
      entry.img.src = this.base + "/tiles/" + t + ".png";
      this.tiles.set(t, entry);
    }
    return entry;
  };
  AtlasMap.prototype.thumbPx = function () { return Math.max(20, Math.min(64, this.thumb * 1.5)); };
  AtlasMap.prototype.drawOverlay = function (s, dpr) {
    var ctx = this.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, s.w, s.h);
    var vis = this.visiblePoints(THUMB_MAX_VISIBLE);
    this.visible = vis.length;
    this.mode = vis.length <= THUMB_MAX_VISIBLE && this.view.scale > this.fitScale * 1.5 ? "thumbs" : "dots";
    this.root.dataset.mode = this.mode;
    if (this.mode === "thumbs") {
      var size = this.thumbPx(), half = size / 2, hl = this.highlight;
      ctx.imageSmoothingEnabled = false;
      for (var k = 0; k < vis.length; k++) {
        var i = vis[k], p = this.pointOnScreen(i), at = this.tileOf(i), tile = this.tile(at.t);
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
      var h = this.pointOnScreen(this.hover);
      ctx.beginPath(); ctx.arc(h[0], h[1], 7, 0, 2 * Math.PI);
      ctx.lineWidth = 2; ctx.strokeStyle = "#111"; ctx.stroke();
    }
    if (this.opened !== undefined && this.opened >= 0) {
      var o = this.pointOnScreen(this.opened);
      ctx.beginPath(); ctx.arc(o[0], o[1], 9, 0, 2 * Math.PI);
      ctx.lineWidth = 2.5; ctx.strokeStyle = "#e4572e"; ctx.stroke();
    }
    if (this.drag && this.drag.path && this.drag.path.length > 1) {
      var path = this.drag.path;
      ctx.beginPath(); ctx.moveTo(path[0][0], path[0][1]);
      for (var j = 1; j < path.length; j++) ctx.lineTo(path[j][0], path[j][1]);
      ctx.closePath();
      ctx.fillStyle = "rgba(30,100,200,0.12)"; ctx.fill();
      ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5; ctx.strokeStyle = "#1e64c8"; ctx.stroke(); ctx.setLineDash([]);
    }
  };

  // ---- pointer: pan, zoom, hover, click, box and lasso ----------------------------------------
  AtlasMap.prototype.nearest = function (sx, sy) {   // in thumbnail mode, anywhere on a thumbnail
    var px = this.mode === "thumbs" ? Math.max(PICK_RADIUS, this.thumbPx() / 2) : PICK_RADIUS;
    var r = px / this.view.scale, c = this.toData(sx, sy), best = -1, bestD = r * r, xy = this.xy;
    this.eachIn(c[0] - r, c[1] - r, c[0] + r, c[1] + r, function (i) {
      var dx = xy[2 * i] - c[0], dy = xy[2 * i + 1] - c[1], dd = dx * dx + dy * dy;
      if (dd <= bestD) { bestD = dd; best = i; }
    });
    return best;
  };
  AtlasMap.prototype.bindPointer = function () {
    var self = this, o = this.overlay;
    function local(e) { var r = o.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
    o.addEventListener("wheel", function (e) {
      e.preventDefault();
      var p = local(e);
      self.zoomAt(p[0], p[1], Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
      self.hoverAt(p);   // the points moved under the pointer: the tooltip follows (or goes)
    }, {passive: false});
    o.addEventListener("pointerdown", function (e) {
      if (e.button !== 0) return;
      var p = local(e);
      o.setPointerCapture(e.pointerId);
      var tool = e.shiftKey && self.tool === "pan" ? "box" : self.tool;
      self.drag = {tool: tool, start: p, last: p, moved: false, path: tool === "pan" ? null : [p]};
      self.hover = -1;
      self.hideTip();
    });
    o.addEventListener("pointermove", function (e) {
      var p = local(e), d = self.drag;
      if (!d) { self.hoverAt(p); return; }
      if (Math.abs(p[0] - d.start[0]) + Math.abs(p[1] - d.start[1]) > 3) d.moved = true;
      if (d.tool === "pan") {
        self.view.cx -= (p[0] - d.last[0]) / self.view.scale;
        self.view.cy += (p[1] - d.last[1]) / self.view.scale;
      } else if (d.tool === "box") {
        var a = d.start;
        d.path = [a, [p[0], a[1]], p, [a[0], p[1]]];
      } else {
        d.path.push(p);
      }
      d.last = p;
      self.requestRender();
    });
    function end(e) {
      var d = self.drag;
      if (!d) return;
      self.drag = null;
      if (!d.moved) { var i = self.nearest(d.start[0], d.start[1]); if (i >= 0) self.openPoint(i); }
      else if (d.tool !== "pan" && d.path.length > 2) self.select(self.inside(d.path));
      self.requestRender();
      if (e && e.type === "pointerup") self.hoverAt(local(e));
    }
    o.addEventListener("pointerup", end);
    o.addEventListener("dblclick", function (e) { var p = local(e); self.zoomAt(p[0], p[1], e.shiftKey ? 0.5 : 2); });
    document.addEventListener("keydown", function (e) {   // Escape drops a lasso or box being drawn
      if (e.key === "Escape" && self.drag) { self.drag = null; self.requestRender(); }
    });
    o.addEventListener("pointercancel", function () { self.drag = null; self.requestRender(); });
    o.addEventListener("pointerleave", function () { if (!self.drag) { self.hover = -1; self.hideTip(); self.requestRender(); } });
  };

  // Indices of the points inside a screen-space polygon (the lasso, or the box's 4 corners).
  AtlasMap.prototype.inside = function (path) {
    var poly = path.map(function (p) { return this.toData(p[0], p[1]); }, this);
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    poly.forEach(function (p) {
      x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
    });
    var xy = this.xy, out = [], m = poly.length;
    this.eachIn(x0, y0, x1, y1, function (i) {
      var x = xy[2 * i], y = xy[2 * i + 1], inPoly = false;
      for (var a = 0, b = m - 1; a < m; b = a++) {
        var pa = poly[a], pb = poly[b];
        var crosses = (pa[1] > y) !== (pb[1] > y);   // even-odd rule
        if (crosses && x < (pb[0] - pa[0]) * (y - pa[1]) / (pb[1] - pa[1]) + pa[0]) inPoly = !inPoly;
      }
      if (inPoly) out.push(i);
    });
    return Int32Array.from(out).sort();
  };

  AtlasMap.prototype.hoverAt = function (p) {
    var i = this.nearest(p[0], p[1]);
    if (i !== this.hover) { this.hover = i; this.requestRender(); }
    if (i < 0) { this.hideTip(); return; }
    this.showTip(i, p);
  };
  AtlasMap.prototype.hideTip = function () { this.tip.hidden = true; };
  AtlasMap.prototype.thumbFromTile = function (i, scale) {
    // The thumbnail cut out of its tile with CSS: one tile image serves every thumbnail in it
    // (hover, selection grid), so a selection of hundreds costs a few requests.
    var at = this.tileOf(i), side = this.tileSide * this.thumb;
    var img = el("img", {src: this.base + "/tiles/" + at.t + ".png", alt: "image " + i, class: "tile-img"});
    img.style.width = side * scale + "px";   // the height follows: a tile has only the rows it fills
    img.style.left = -at.sx * scale + "px";
    img.style.top = -at.sy * scale + "px";
    var box = el("div", {class: "thumb-crop"}, [img]);
    box.style.width = box.style.height = this.thumb * scale + "px";
    return box;
  };
  AtlasMap.prototype.describe = function (i) {
    var c = this.cols, conf = c.confidence[i];
    return "label " + this.className(c.labels[i]) + " · predicted " + this.className(c.predictions[i]) +
      (conf >= 0 ? " (" + conf.toFixed(2) + ")" : "");
  };
  AtlasMap.prototype.showTip = function (i, p) {
    var tip = this.tip;
    if (tip.dataset.index !== String(i)) {
      tip.dataset.index = String(i);
      tip.textContent = "";
      tip.appendChild(this.thumbFromTile(i, Math.max(1, Math.round(72 / this.thumb))));
      tip.appendChild(el("div", {class: "tip-text", text: "#" + i + " · " + this.describe(i)}));
      var file = el("div", {class: "tip-file", text: "…"});
      tip.appendChild(file);
      var self = this;   // the file name is asked for once the pointer rests on the point
      clearTimeout(this.tipTimer);
      this.tipTimer = setTimeout(function () {
        if (tip.dataset.index !== String(i)) return;
        self.source(i).then(function (src) { if (tip.dataset.index === String(i)) file.textContent = src; });
      }, 120);
    }
    tip.hidden = false;
    var s = this.size(), w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.min(s.w - w - 4, p[0] + 14) + "px";
    tip.style.top = Math.max(4, Math.min(s.h - h - 4, p[1] + 14)) + "px";
  };
  AtlasMap.prototype.source = function (i) {
    this.sources = this.sources || new Map();
    if (!this.sources.has(i)) {
      this.sources.set(i, this.items([i]).then(function (rows) { return rows.length ? String(rows[0].source) : ""; },
                                               function () { return ""; }));
    }
    return this.sources.get(i);
  };
  AtlasMap.prototype.items = function (indices) {
    return api(this.base + "/items", {json: {indices: Array.from(indices)}}).then(function (d) {
      return Array.isArray(d) ? d : (d.items || d.rows || []);
    });
  };

  // ---- highlight (search, confusion cell) ------------------------------------------------------
  AtlasMap.prototype.setHighlight = function (indices, what) {
    var box = $(".map-highlight", this.root);
    box.textContent = "";
    if (!indices) {
      this.highlight = null;
      box.hidden = true;
    } else {
      var flags = new Uint8Array(this.n), list = [];
      for (var k = 0; k < indices.length; k++) {
        var i = indices[k];
        if (i >= 0 && i < this.n && !flags[i]) { flags[i] = 1; list.push(i); }
      }
      this.highlight = {flags: flags, list: Int32Array.from(list), what: what};
      var self = this, clear = el("button", {type: "button", class: "link", text: "clear"});
      clear.addEventListener("click", function () {
        self.setHighlight(null);
        setQuery("q", null);
        $(".map-search input", self.root).value = "";
      });
      box.appendChild(el("span", {class: "hl-count", text: list.length.toLocaleString() + " highlighted"}));
      box.appendChild(el("span", {text: " · " + what + " "}));
      box.appendChild(clear);
      box.hidden = false;
    }
    this.root.dataset.highlighted = this.highlight ? String(this.highlight.list.length) : "0";
    this.recolor();
  };
  AtlasMap.prototype.search = function (q) {
    var self = this;
    q = q.trim();
    setQuery("q", q || null);
    if (!q) { this.setHighlight(null); return Promise.resolve(); }
    return api(this.base + "/search?q=" + encodeURIComponent(q)).then(function (d) {
      self.setHighlight(d.indices, "search “" + q + "”");
    }).catch(function (err) { showError($(".map-highlight", self.root), err.message); });
  };

  // ---- selection: grid, counts, export ---------------------------------------------------------
  AtlasMap.prototype.select = function (indices) {
    var self = this, panel = $(".map-selection", this.root);
    this.selection = indices;
    this.root.dataset.selected = String(indices.length);
    panel.hidden = false;
    var body = $(".selection-body", panel);
    body.textContent = "";
    $(".selection-title", panel).textContent = indices.length.toLocaleString() + " selected";
    if (!indices.length) return Promise.resolve();
    body.appendChild(this.countsTable(indices));
    var grid = el("div", {class: "selection-grid"});
    body.appendChild(grid);
    var shown = indices.subarray(0, GRID_ITEMS);
    if (indices.length > GRID_ITEMS)
      body.appendChild(el("p", {class: "muted", text: "showing the first " + GRID_ITEMS + " of " + indices.length.toLocaleString()}));
    return this.items(shown).then(function (rows) {
      rows.forEach(function (row) {
        var label = self.className(row.label), pred = self.className(row.prediction);
        var cell = el("figure", {class: "sel-item" + (label === pred ? "" : " wrong"), "data-index": row.index,
                                 title: row.source},
          [self.thumbFromTile(row.index, 52 / self.thumb), el("figcaption", {text: label + " → " + pred})]);
        cell.addEventListener("click", function () { self.openPoint(row.index); });
        grid.appendChild(cell);
      });
    }).catch(function (err) { showError(grid, err.message); });
  };
  AtlasMap.prototype.countsTable = function (indices) {
    var c = this.cols, self = this;
    function count(column) {
      var m = new Map();
      for (var k = 0; k < indices.length; k++) { var v = column[indices[k]]; m.set(v, (m.get(v) || 0) + 1); }
      return Array.from(m.entries()).sort(function (a, b) { return b[1] - a[1] || a[0] - b[0]; });
    }
    var box = el("div", {class: "selection-counts"});
    [["label", c.labels], ["prediction", c.predictions]].forEach(function (pair) {
      var table = el("table", {class: "counts", "data-column": pair[0]},
        [el("thead", {}, [el("tr", {}, [el("th", {text: pair[0]}), el("th", {text: "count"})])])]);
      var tb = el("tbody");
      count(pair[1]).forEach(function (e) {
        var sw = el("span", {class: "swatch"});
        sw.style.background = css(classColor(e[0]));
        tb.appendChild(el("tr", {"data-class": String(e[0])}, [el("td", {}, [sw, document.createTextNode(self.className(e[0]))]),
          el("td", {class: "num", text: String(e[1])})]));
      });
      table.appendChild(tb);
      box.appendChild(table);
    });
    return box;
  };
  AtlasMap.prototype.exportSelection = function (format) {
    if (!this.selection || !this.selection.length) return;
    var url = this.base + "/" + encodeURIComponent(this.layer) + "/export?format=" + format;
    var body = {indices: Array.from(this.selection), method: this.method};
    if (this.alignTo) body.align_to = this.alignTo;
    var self = this;
    return download(url, body, this.id + "-" + this.layer + "-selection." + format)
      .catch(function (err) { showError($(".selection-body", self.root), err.message); });
  };

  // ---- confusion matrix ------------------------------------------------------------------------
  AtlasMap.prototype.toggleConfusion = function () {
    var panel = $(".map-confusion", this.root), self = this;
    panel.hidden = !panel.hidden;
    if (panel.hidden || panel.dataset.loaded) return Promise.resolve();
    panel.dataset.loaded = "1";
    var body = $(".confusion-body", panel);
    return api(this.base + "/confusion").then(function (d) {
      var names = d.class_names || [], m = d.matrix, max = 0;
      m.forEach(function (row) { row.forEach(function (v) { max = Math.max(max, v); }); });
      var head = el("tr", {}, [el("th", {class: "corner", text: "true ↓ pred →"})]);
      names.forEach(function (nm) { head.appendChild(el("th", {text: nm})); });
      var table = el("table", {class: "confusion"}, [el("thead", {}, [head])]), tb = el("tbody");
      m.forEach(function (row, t) {
        var tr = el("tr", {}, [el("th", {text: names[t] !== undefined ? names[t] : String(t)})]);
        row.forEach(function (v, p) {
          var td = el("td", {text: String(v), "data-true": t, "data-pred": p, class: t === p ? "diag" : "off"});
          var a = max ? v / max : 0;
          if (t === p) td.style.background = "rgba(44,160,44," + (0.1 + 0.8 * a) + ")";
          else if (v) td.style.background = "rgba(214,39,40," + (0.15 + 0.85 * Math.sqrt(a)) + ")";
          if (v) td.addEventListener("click", function () { self.confusionCell(t, p, names); });
          else td.classList.add("empty");
          tr.appendChild(td);
        });
        tb.appendChild(tr);
      });
      table.appendChild(tb);
      body.textContent = "";
      body.appendChild(table);
    }).catch(function (err) { panel.dataset.loaded = ""; showError(body, err.message); });
  };
  AtlasMap.prototype.confusionCell = function (t, p, names) {
    var self = this;
    $$(".confusion td.active", this.root).forEach(function (td) { td.classList.remove("active"); });
    var td = $('.confusion td[data-true="' + t + '"][data-pred="' + p + '"]', this.root);
    if (td) td.classList.add("active");
    return api(this.base + "/confusion/" + t + "/" + p).then(function (d) {
      self.setHighlight(d.indices, "true " + (names[t] || t) + " predicted " + (names[p] || p));
    }).catch(function (err) { showError($(".confusion-body", self.root), err.message); });
  };
  // ---- one point: details, explain link, neighbours --------------------------------------------
  AtlasMap.prototype.openPoint = function (i) {
    if (!(i >= 0 && i < this.n)) return;
    var panel = $(".map-point", this.root), self = this;
    this.opened = i;
    this.root.dataset.point = String(i);
    setQuery("point", i);
    panel.hidden = false;
    var body = $(".point-body", panel);
    body.textContent = "";
    var file = el("div", {class: "point-file", text: "…"});
    var explain = el("a", {class: "button explain-link", text: "explain",
                           href: cs.explainUrl("atlas:" + this.id + "/" + i, this.info && this.info.served_model)});
    body.appendChild(el("div", {class: "point-head"}, [
      el("img", {class: "point-thumb", src: this.base + "/thumbs/" + i + ".png", alt: "image " + i}),
      el("div", {}, [el("div", {class: "point-title", text: "#" + i}), el("div", {text: this.describe(i)}), file, explain])]));
    this.source(i).then(function (src) { file.textContent = src; });
    var nb = el("div", {class: "neighbors-panel"});
    body.appendChild(nb);
    nb.addEventListener("cs-neighbor", function (e) { self.openPoint(e.detail.index); });   // walk on
    if (window.csNeighbors) window.csNeighbors.show(nb, this.id, this.layer, {index: i});
    else nb.appendChild(el("p", {class: "muted", text: "Neighbours are not available in this build."}));
    self.requestRender();
  };

  // ---- controls ------------------------------------------------------------------------------
  AtlasMap.prototype.buildControls = function () {
    var self = this, root = this.root;
    this.overlay = $(".map-overlay", root);
    this.tip = $(".map-tip", root);
    var color = $("select[name=color]", root);
    color.value = this.colorBy;
    color.addEventListener("change", function () {
      self.colorBy = color.value;
      setQuery("color", color.value);
      if (self.renderer) self.recolor();
    });
    $$("select[data-navigate]", root).forEach(function (sel) {
      sel.addEventListener("change", function () {   // method and layer make a new address
        var layer = $("select[name=layer]", root), method = $("select[name=method]", root);
        var url = new URL(window.location.href);
        url.pathname = "/atlas/" + encodeURIComponent(self.id) + "/" + encodeURIComponent(layer ? layer.value : self.layer);
        url.searchParams.set("method", method.value);
        url.searchParams.delete("point");
        window.location.assign(url.toString());
      });
    });
    $$(".map-tools button[data-tool]", root).forEach(function (b) {
      b.addEventListener("click", function () {
        self.tool = b.dataset.tool;
        root.dataset.tool = self.tool;
        $$(".map-tools button[data-tool]", root).forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
      });
    });
    $(".map-fit", root).addEventListener("click", function () { if (self.bounds) self.fit(); });
    $(".map-search", root).addEventListener("submit", function (e) {
      e.preventDefault();
      if (self.renderer) self.search($(".map-search input", root).value);
    });
    $(".map-confusion-toggle", root).addEventListener("click", function () { self.toggleConfusion(); });
    $$(".map-export", root).forEach(function (b) {
      b.addEventListener("click", function () { self.exportSelection(b.dataset.format); });
    });
    $(".selection-clear", root).addEventListener("click", function () {
      self.selection = null; root.dataset.selected = "0";
      $(".map-selection", root).hidden = true;
    });
    $(".point-close", root).addEventListener("click", function () {
      $(".map-point", root).hidden = true; self.opened = -1; setQuery("point", null); self.requestRender();
    });
  };

  function boot() {
    var root = document.getElementById("atlas-map");
    if (!root) return;
    var map = new AtlasMap(root);
    window.csMap = map;
    map.start();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
