// convscope: the small shared helpers every page uses (hand-written; no build, no CDN).
"use strict";
const cs = (() => {
  function query() { return new URLSearchParams(window.location.search); }

  // Fetch JSON; a 4xx/5xx answer throws an Error carrying the server's one-line message.
  async function api(url, opts = {}) {
    const init = Object.assign({ headers: {} }, opts);
    if (init.json !== undefined) {
      init.method = init.method || "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.json);
      delete init.json;
    }
    const response = await fetch(url, init);
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const message = (body && body.error) || (typeof body === "string" && body) || response.statusText;
      const err = new Error(message);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function showError(el, message) {
    if (!el) return;
    el.hidden = false;
    el.classList.add("cs-error");
    el.textContent = message;
  }

  function clearError(el) {
    if (!el) return;
    el.hidden = true;
    el.textContent = "";
  }

  const FINISHED = ["done", "failed", "cancelled"];

  // One event stream for every job the page follows. The browser opens at most six connections
  // per host: a stream per job (16 maps in the explainer) held the map downloads back until
  // streams ended. Following a job reopens the stream with the new list (the server answers each
  // job's current state first, so nothing is missed); a job that finishes is dropped.
  const streams = (() => {
    const MAX = 150;  // ids per stream (the server takes 200); the others wait for a free place
    const listeners = new Map();  // job id -> Set of functions called with each new state
    let source = null, timer = null, covered = new Set();

    function deliver(j) {
      for (const fn of [...(listeners.get(j.id) || [])]) fn(j);
      if (FINISHED.includes(j.status)) {
        listeners.delete(j.id);
        if ([...listeners.keys()].some((id) => !covered.has(id))) reopen(20);
      }
      if (!listeners.size) stop();
    }
    function stop() {
      if (source) source.close();
      source = null;
    }
    function open() {
      timer = null;
      stop();
      if (!listeners.size) return;
      covered = new Set([...listeners.keys()].slice(0, MAX));
      source = new EventSource(`/api/events?jobs=${[...covered].join(",")}`);
      source.onmessage = (event) => deliver(JSON.parse(event.data));
      source.onerror = () => {  // the stream broke: ask each job once, then listen again
        stop();
        for (const id of [...listeners.keys()]) {
          api(`/api/jobs/${id}`).then(deliver).catch((e) => deliver({ id, status: "failed", error: e.message }));
        }
        reopen(500);
      };
    }
    function reopen(delay) {  // several jobs submitted together share one new stream
      if (timer === null) timer = setTimeout(open, delay);
    }
    function follow(id, fn) {
      if (!listeners.has(id)) { listeners.set(id, new Set()); reopen(20); }
      listeners.get(id).add(fn);
      return () => {
        const set = listeners.get(id);
        if (set) { set.delete(fn); if (!set.size) listeners.delete(id); }
        if (!listeners.size) stop();
      };
    }
    return { follow };
  })();

  // Follow a job: draw a progress bar and a cancel button in `host`, call onDone(job) at the end
  // (whatever the status: done, failed or cancelled). Returns {element, cancel(), close()}.
  function job(jobOrId, host, onDone) {
    const id = typeof jobOrId === "string" ? jobOrId : jobOrId.id;
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = 0;
    const label = el("span", { class: "cs-job-status", text: "queued" });
    const cancel = el("button", { type: "button", class: "cs-cancel", text: "Cancel" });
    const box = el("div", { class: "cs-job", "data-job": id }, bar, label, cancel);
    if (host) host.append(box);
    let finished = false, unfollow = () => {};
    const finish = (j) => {
      if (finished) return;
      finished = true;
      unfollow();
      cancel.disabled = true;
      label.textContent = j.status + (j.error ? ": " + j.error : "");
      box.dataset.status = j.status;
      if (j.status === "done") bar.value = bar.max;
      if (onDone) onDone(j);
    };
    const update = (j) => {
      if (finished) return;  // a late answer (the cancel request's "running") must not undo the end
      box.dataset.status = j.status;
      if (j.total > 0) { bar.max = j.total; bar.value = j.done; }
      label.textContent = j.status + (j.total > 0 ? ` ${j.done}/${j.total}` : "");
      if (FINISHED.includes(j.status)) finish(j);
    };
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try { update(await api(`/api/jobs/${id}/cancel`, { method: "POST" })); } catch (e) { label.textContent = e.message; }
    });
    if (typeof jobOrId !== "string" && FINISHED.includes(jobOrId.status)) finish(jobOrId);
    else unfollow = streams.follow(id, update);
    return { element: box, cancel: () => cancel.click(), close: () => unfollow() };
  }

  // Submit with api() and follow the job to its end: resolves with the finished job.
  function run(url, body, el) {
    return new Promise((resolve, reject) => {
      api(url, { json: body }).then((j) => job(j, el, resolve)).catch(reject);
    });
  }

  // A form's named settings: checkboxes as 1 or 0, other fields when not empty, `skip` left out.
  function formSettings(form, skip = []) {
    const out = {};
    for (const field of form.elements) {
      if (!field.name || skip.includes(field.name)) continue;
      if (field.type === "checkbox") out[field.name] = field.checked ? "1" : "0";
      else if (field.value.trim() !== "") out[field.name] = field.value.trim();
    }
    return out;
  }

  // A form run as a job (the lab, the leaderboard): each submit posts settings() to `url`, puts
  // the settings and run=1 in the address (`page`, after `query`: a reload shows the same
  // result, answered from the server's cache), follows the job in a row on top of `jobsBox`, and
  // hands the latest job to draw() when it is done (its failure to `errorBox`).
  function jobForm(form, { url, page, query = {}, settings, draw, errorBox, jobsBox }) {
    let latest = null;  // the job whose result the page shows when it finishes
    async function start() {
      clearError(errorBox);
      const s = settings();
      history.replaceState(null, "", `${page}?${new URLSearchParams({ ...query, ...s, run: "1" })}`);
      let started;
      try {
        started = await api(url, { json: s });
      } catch (e) {
        showError(errorBox, e.message);
        return;
      }
      latest = started.id;
      const row = el("div", { class: "form-job" }, el("span", { class: "muted", text: started.title }));
      jobsBox.prepend(row);
      job(started, row, (j) => {
        if (j.status === "failed" && j.id === latest) showError(errorBox, j.error || "the job failed");
        if (j.status === "done" && j.id === latest) draw(j);
      });
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); start(); });
    // not form.dataset: a form's named control ("dataset") shadows the element's own properties
    if (form.getAttribute("data-autorun") === "1") start();
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));  // left out
    return node;
  }

  // Fetch binary data (an ArrayBuffer); a 4xx/5xx answer throws the server's one-line message.
  async function binary(url) {
    const response = await fetch(url);
    if (response.ok) return response.arrayBuffer();
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).error || text; } catch (e) { /* plain text */ }
    throw new Error(message || `${response.status} ${url}`);
  }

  // POST `json` to `url` and save the answer as `filename` (the browser's download).
  async function download(url, json, filename) {
    const response = await fetch(url, { method: "POST", body: JSON.stringify(json),
                                        headers: { "Content-Type": "application/json" } });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || response.statusText);
    }
    const a = el("a", { href: URL.createObjectURL(await response.blob()), download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // Upload the file chosen in `input` whenever it changes: onImage(reference, fileName) with the
  // server's image reference, or the message in `errorEl` (and the choice cleared) when it is refused.
  function upload(input, errorEl, onImage) {
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      clearError(errorEl);
      const body = new FormData();
      body.append("file", file, file.name);
      try {
        const answer = await api("/api/upload", { method: "POST", body });
        await onImage(answer.image, answer.name);
      } catch (error) {
        showError(errorEl, error.message);
        input.value = "";
      }
    });
  }

  // While `promise` (a page's short call, run by the server's one worker) is pending, say in
  // `host` which running job it waits for: the worker finishes the job's step loop first, so a
  // quick answer can wait behind a long lab job. The note goes when the promise settles.
  function waitNote(host, promise) {
    let done = false, timer = null;
    const note = el("span", { class: "cs-wait muted" });
    async function look() {
      if (done) return;
      try {
        const running = (await api("/api/jobs")).jobs.find((j) => j.status === "running");
        if (done) return;
        note.textContent = running
          ? ` waiting for the running job “${running.title}”` +
            (running.total > 0 ? ` (${running.done}/${running.total})` : "") + ", which has the model now"
          : "";
        if (!note.isConnected) host.append(note);
      } catch (e) { /* the note is a courtesy: the call itself reports its own errors */ }
      timer = setTimeout(look, 1000);
    }
    timer = setTimeout(look, 400);
    const stop = () => { done = true; clearTimeout(timer); note.remove(); };
    promise.then(stop, stop);
    return promise;
  }

  // The explainer's address of an image with the served model that made it (an atlas's images:
  // the atlas's model, not the server's first one); no model when the server does not serve it.
  function explainUrl(image, model) {
    return `/explain?${new URLSearchParams(model ? { image, model } : { image })}`;
  }

  return { api, binary, explainUrl, waitNote, download, upload, job, jobForm, formSettings, run, showError, clearError,
           query, el };
})();
window.cs = cs;
