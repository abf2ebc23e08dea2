// The model page: filter the layer tree by name as you type (kept in the address as ?q=),
// fold and unfold rows that have layers inside them, switch models.
"use strict";
(() => {
  const search = document.getElementById("layer-search");
  const rows = Array.from(document.querySelectorAll("#layer-tree tbody tr[data-name]"));
  const byName = new Map(rows.map((row) => [row.dataset.name, row]));
  const count = document.getElementById("layer-count");
  const none = document.getElementById("no-match");

  // The same rule as model_page.matches on the server: a case-insensitive substring.
  const matches = (name, query) => name.toLowerCase().includes(query.trim().toLowerCase());

  function ancestors(row) {
    const out = [];
    for (let p = byName.get(row.dataset.parent); p; p = byName.get(p.dataset.parent)) out.push(p);
    return out;
  }

  function apply() {
    const query = search.value;
    const active = query.trim() !== "";
    const shown = new Set();
    for (const row of rows) {
      const hit = matches(row.dataset.name, query);
      row.classList.toggle("match", active && hit);
      if (hit) { shown.add(row); for (const p of ancestors(row)) shown.add(p); }
    }
    let visible = 0;
    for (const row of rows) {
      // a folded row hides what is inside it, unless a search is looking inside
      const folded = !active && ancestors(row).some((p) => p.querySelector("button.toggle[aria-expanded=false]"));
      row.hidden = !shown.has(row) || folded;
      if (shown.has(row)) visible += 1;
    }
    count.textContent = `${visible} of ${rows.length} layers`;
    none.hidden = visible > 0;
    none.querySelector(".q").textContent = query;
  }

  function remember() {
    const params = new URLSearchParams(window.location.search);
    if (search.value.trim()) params.set("q", search.value); else params.delete("q");
    const text = params.toString();
    history.replaceState(null, "", window.location.pathname + (text ? `?${text}` : ""));
  }

  search.addEventListener("input", () => { apply(); remember(); });
  document.getElementById("layer-search-form").addEventListener("submit", (event) => {
    event.preventDefault(); apply(); remember();
  });
  for (const button of document.querySelectorAll("#layer-tree button.toggle")) {
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") === "true";
      button.setAttribute("aria-expanded", open ? "false" : "true");
      apply();
    });
  }
  const picker = document.getElementById("model-picker");
  if (picker) {
    picker.addEventListener("change", () => {  // the other model, with the search kept
      const params = new URLSearchParams({ model: picker.value });
      if (search.value.trim()) params.set("q", search.value);
      window.location.href = `/?${params}`;
    });
  }
  apply();
})();
