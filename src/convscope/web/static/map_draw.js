/* Drawing the points of the dataset map (static/map.js): the colours, and two renderers with
 * one interface (setPositions, setColors, draw(map, w, h, dpr)):
 *  - GLRenderer: WebGL points, one draw call for all of them (+ one for the highlighted ones);
 *  - CanvasRenderer: the fallback, square dots written straight into one ImageData.
 * softwareGL() tells whether WebGL runs on a software rasterizer, where the fallback is faster.
 */
"use strict";
(() => {
  const BG = [250, 250, 250];
  const UNKNOWN = [170, 170, 170];
  const PALETTE = [
    "1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22",
    "17becf", "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5", "c49c94", "f7b6d2", "c7c7c7",
    "dbdb8d", "9edae5"];
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const CORRECT = [44, 160, 44], WRONG = [214, 39, 40];

  function hex(h) { return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)]; }
  function css(rgb) { return "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")"; }
  function hsl(h, s, l) {
    const a = s * Math.min(l, 1 - l);
    function f(n) { const k = (n + h / 30) % 12; return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); }
    return [f(0), f(8), f(4)];
  }
  function classColor(c) {
    if (c < 0) return UNKNOWN;
    if (c < PALETTE.length) return hex(PALETTE[c]);
    return hsl((c * 137.508) % 360, 0.6, 0.5);
  }
  function rampColor(t) {
    if (!(t >= 0)) return UNKNOWN;   // NaN
    t = Math.min(1, t) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return [Math.round(a[0] + f * (b[0] - a[0])), Math.round(a[1] + f * (b[1] - a[1])), Math.round(a[2] + f * (b[2] - a[2]))];
  }

  // ---- renderers -----------------------------------------------------------------------------
  class GLRenderer {
    constructor(canvas) {
      const gl = canvas.getContext("webgl", {preserveDrawingBuffer: true, antialias: false, premultipliedAlpha: false});
      if (!gl) throw new Error("no WebGL");
      this.name = "webgl";
      this.canvas = canvas;
      this.gl = gl;
      const vs = "attribute vec2 p; attribute vec4 c; uniform vec2 center; uniform vec2 scale; uniform float size;" +
        "varying vec4 vc; void main(){ gl_Position = vec4((p - center) * scale, 0.0, 1.0); gl_PointSize = size; vc = c; }";
      const fs = "precision mediump float; varying vec4 vc; void main(){ vec2 d = gl_PointCoord - 0.5;" +
        " if (dot(d, d) > 0.25) discard; gl_FragColor = vc; }";
      const prog = gl.createProgram();
      [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]].forEach((s) => {
        const sh = gl.createShader(s[0]);
        gl.shaderSource(sh, s[1]); gl.compileShader(sh);
        if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
        gl.attachShader(prog, sh);
      });
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
      this.prog = prog;
      this.loc = {p: gl.getAttribLocation(prog, "p"), c: gl.getAttribLocation(prog, "c"),
                  center: gl.getUniformLocation(prog, "center"), scale: gl.getUniformLocation(prog, "scale"),
                  size: gl.getUniformLocation(prog, "size")};
      const range = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE);
      this.maxSize = range ? range[1] : 64;
      this.buf = {pos: gl.createBuffer(), col: gl.createBuffer(), hpos: gl.createBuffer(), hcol: gl.createBuffer()};
      this.count = 0; this.hcount = 0;
    }
    setPositions(xy) {
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.pos);
      gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
      this.xy = xy; this.count = xy.length / 2;
    }
    setColors(rgba, list) {
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.col);
      gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW);
      this.hcount = list ? list.length : 0;
      if (list && list.length) {   // highlighted points again, on top and larger
        const p = new Float32Array(2 * list.length), c = new Uint8Array(4 * list.length);
        for (let k = 0; k < list.length; k++) {
          const i = list[k];
          p[2 * k] = this.xy[2 * i]; p[2 * k + 1] = this.xy[2 * i + 1];
          c.set(rgba.subarray(4 * i, 4 * i + 4), 4 * k);
        }
        gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.hpos); gl.bufferData(gl.ARRAY_BUFFER, p, gl.STATIC_DRAW);
        gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.hcol); gl.bufferData(gl.ARRAY_BUFFER, c, gl.STATIC_DRAW);
      }
    }
    draw(map, w, h, dpr) {
      const gl = this.gl, v = map.view, L = this.loc;
      gl.viewport(0, 0, this.canvas.width, this.canvas.height);
      gl.clearColor(BG[0] / 255, BG[1] / 255, BG[2] / 255, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.useProgram(this.prog);
      gl.uniform2f(L.center, v.cx, v.cy);
      gl.uniform2f(L.scale, 2 * v.scale / w, 2 * v.scale / h);
      const size = map.pointSize() * dpr;
      const passes = [[this.buf.pos, this.buf.col, this.count, size]];
      if (this.hcount) passes.push([this.buf.hpos, this.buf.hcol, this.hcount, size * 1.8]);
      passes.forEach((pass) => {
        gl.bindBuffer(gl.ARRAY_BUFFER, pass[0]);
        gl.enableVertexAttribArray(L.p); gl.vertexAttribPointer(L.p, 2, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, pass[1]);
        gl.enableVertexAttribArray(L.c); gl.vertexAttribPointer(L.c, 4, gl.UNSIGNED_BYTE, true, 0, 0);
        gl.uniform1f(L.size, Math.min(this.maxSize, pass[3]));
        gl.drawArrays(gl.POINTS, 0, pass[2]);
      });
    }
  }

  // Canvas2D fallback: square dots written into one ImageData (fast on software rendering).
  class CanvasRenderer {
    constructor(canvas) {
      this.name = "canvas";
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.image = null;
    }
    setPositions(xy) { this.xy = xy; this.count = xy.length / 2; }
    setColors(rgba, list) {
      const packed = new Uint32Array(rgba.buffer.slice(0));   // RGBA bytes read as one little-endian word
      this.packed = packed; this.list = list;
    }
    draw(map, w, h, dpr) {
      const W = this.canvas.width, H = this.canvas.height;
      if (!this.image || this.image.width !== W || this.image.height !== H) {
        this.image = this.ctx.createImageData(W, H);
        this.words = new Uint32Array(this.image.data.buffer);
      }
      const words = this.words, xy = this.xy, packed = this.packed, v = map.view;
      words.fill((255 << 24) | (BG[2] << 16) | (BG[1] << 8) | BG[0]);
      const k = v.scale * dpr, ox = W / 2 - v.cx * k, oy = H / 2 + v.cy * k;
      const dots = (indices, count, s) => {
        const half = s >> 1;
        for (let j = 0; j < count; j++) {
          const i = indices ? indices[j] : j;
          const x = Math.round(xy[2 * i] * k + ox) - half, y = Math.round(oy - xy[2 * i + 1] * k) - half;
          if (!(x >= -s && y >= -s && x < W && y < H)) continue;   // off screen, or no coordinates
          const x0 = Math.max(0, x), x1 = Math.min(W, x + s), y1 = Math.min(H, y + s), col = packed[i];
          for (let yy = Math.max(0, y); yy < y1; yy++) words.fill(col, yy * W + x0, yy * W + x1);
        }
      };
      const size = Math.max(2, Math.round(map.pointSize() * dpr * 0.85));
      dots(null, this.count, size);
      if (this.list && this.list.length) dots(this.list, this.list.length, Math.round(size * 1.8));
      this.ctx.putImageData(this.image, 0, 0);
    }
  }

  // WebGL on a software rasterizer (SwiftShader, llvmpipe: headless Chromium, VMs without a GPU)
  // draws 100k points about 8x slower than the ImageData fallback (110 ms against 13 ms a frame,
  // measured in headless Chromium), so "auto" takes Canvas2D there; ?renderer=webgl forces WebGL.
  function softwareGL() {
    const probe = document.createElement("canvas").getContext("webgl");
    if (!probe) return false;
    const ext = probe.getExtension("WEBGL_debug_renderer_info");
    const name = String(probe.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : probe.RENDERER));
    const lose = probe.getExtension("WEBGL_lose_context");
    if (lose) lose.loseContext();
    return /swiftshader|llvmpipe|softpipe|software/i.test(name);
  }

  window.csMapDraw = {BG, UNKNOWN, CORRECT, WRONG, RAMP, css, classColor, rampColor, softwareGL,
                      GLRenderer, CanvasRenderer};
})();
