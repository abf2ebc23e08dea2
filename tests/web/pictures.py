"""Checks that a page really drew its pictures (not just that the HTML exists)."""

from __future__ import annotations

from typing import Any


def image_drawn(page: Any, selector: str) -> bool:
    """Every <img> matching ``selector`` has loaded with a real size."""
    return bool(page.eval_on_selector_all(
        selector, "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"))


def canvas_drawn(page: Any, selector: str) -> bool:
    """The canvas has pixels that differ from each other (not blank, not one flat colour)."""
    return bool(page.eval_on_selector(selector, """c => {
        const g = c.getContext('2d');
        if (!g) { const copy = document.createElement('canvas'); copy.width = c.width; copy.height = c.height;
                  copy.getContext('2d').drawImage(c, 0, 0); return check(copy.getContext('2d'), c); }
        return check(g, c);
        function check(ctx, c) { const d = ctx.getImageData(0, 0, c.width, c.height).data;
          for (let i = 4; i < d.length; i += 4)
            if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2] || d[i+3] !== d[3]) return true;
          return false; }
    }"""))
