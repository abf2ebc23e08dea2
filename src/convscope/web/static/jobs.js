// The jobs page (/jobs): rows of jobs still queued or running follow their progress live.
"use strict";
(() => {
  for (const row of document.querySelectorAll("#jobs tr[data-job]")) {
    const status = row.querySelector(".status");
    if (status.textContent.startsWith("queued") || status.textContent.startsWith("running")) {
      status.textContent = "";
      cs.job(row.dataset.job, row.querySelector(".follow"), (j) => { status.textContent = j.status; });
    }
  }
})();
