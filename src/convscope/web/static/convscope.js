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

  // Follow a job: draw a progress bar and a cancel button in `el`, call onDone(job) at the end
  // (whatever the status: done, failed or cancelled). Returns {cancel(), close()}.
  function job(jobOrId, el, onDone) {
    const id = typeof jobOrId === "string" ? jobOrId : jobOrId.id;
    const box = document.createElement("div");
    box.className = "cs-job";
    box.dataset.job = id;
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = 0;
    const label = document.createElement("span");
    label.className = "cs-job-status";
    label.textContent = "queued";
    const cancel = document.createElement("button");
    cancel.type = "button"; cancel.className = "cs-cancel"; cancel.textContent = "Cancel";
    box.append(bar, label, cancel);
    if (el) el.append(box);
    let finished = false, source = null;
    const finish = (j) => {
      if (finished) return;
      finished = true;
      if (source) source.close();
      cancel.disabled = true;
      label.textContent = j.status + (j.error ? ": " + j.error : "");
      box.dataset.status = j.status;
      if (j.status === "done") bar.value = 1;
      if (onDone) onDone(j);
    };
    const update = (j) => {
      box.dataset.status = j.status;
      if (j.total > 0) { bar.max = j.total; bar.value = j.done; }
      label.textContent = j.status + (j.total > 0 ? ` ${j.done}/${j.total}` : "");
      if (["done", "failed", "cancelled"].includes(j.status)) finish(j);
    };
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try { update(await api(`/api/jobs/${id}/cancel`, { method: "POST" })); } catch (e) { label.textContent = e.message; }
    });
    if (typeof jobOrId !== "string" && ["done", "failed", "cancelled"].includes(jobOrId.status)) {
      finish(jobOrId);
    } else {
      source = new EventSource(`/api/jobs/${id}/events`);
      source.onmessage = (event) => update(JSON.parse(event.data));
      source.onerror = async () => {  // the stream broke: ask once for the final state
        if (finished) return;
        source.close();
        try { const j = await api(`/api/jobs/${id}`); if (["done", "failed", "cancelled"].includes(j.status)) finish(j); else setTimeout(() => job(j, null, finish), 500); } catch (e) { label.textContent = e.message; }
      };
    }
    return { element: box, cancel: () => cancel.click(), close: () => source && source.close() };
  }

  // Submit with api() and follow the job to its end: resolves with the finished job.
  function run(url, body, el) {
    return new Promise((resolve, reject) => {
      api(url, { json: body }).then((j) => job(j, el, resolve)).catch(reject);
    });
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  }

  return { api, job, run, showError, clearError, query, el };
})();
window.cs = cs;
