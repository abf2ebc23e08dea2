// Every channel's top patches (/atlas/{id}/{layer}/patches): a tile's picture is loaded only
// when it scrolls near the viewport.
"use strict";
(() => {
  const load = (img) => {
    img.addEventListener("error", () => img.replaceWith(cs.el("span", { class: "cs-error", text: "could not draw" })));
    img.src = img.dataset.src;
    img.removeAttribute("data-src");
  };
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { seen.unobserve(entry.target); load(entry.target); }
    }
  }, { rootMargin: "200px" });
  for (const img of document.querySelectorAll("#patches img[data-src]")) seen.observe(img);
})();
