"""The model page ``/``: the layer tree (type, output shape, parameters, a link to each layer's
page), a search box over layer names (``?q=``) and a model picker (``?model=``).

The rows are :func:`convscope.tasks.layers.layer_table`, the table ``convscope layers``
prints; ``/api/model/layers`` answers exactly what ``convscope layers --json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..model import LayerInfo
from ..tasks.layers import LayerTable
from .pages import render
from .state import Service

router = APIRouter()


@dataclass
class TreeRow:
    info: LayerInfo
    depth: int
    parent: str | None
    """The name of the row this one is nested under (``None`` at the top)."""
    has_children: bool
    href: str
    shown: bool
    """Whether the row passes the search (it or a row nested under it matches)."""
    match: bool


def layer_href(name: str, model: str | None) -> str:
    """The layer page's address (``?model=`` only for a model other than the default)."""
    query = f"?{urlencode({'model': model})}" if model else ""
    return f"/layers/{quote(name, safe=':')}{query}"


def tree(table: LayerTable, query: str = "", model: str | None = None) -> list[TreeRow]:
    """The rows in tree order with their nesting (from the dotted names; the calls ``name:0``,
    ``name:1`` of a module that runs several times nest what is inside it under its first call)
    and whether each is shown for ``query``: a match, or the parent of one."""
    first_row: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    depth: dict[str, int] = {}
    for info in table.rows:
        prefix = info.name.split(":")[0]
        first_row.setdefault(prefix, info.name)
        parent = None
        while "." in prefix and parent is None:  # the nearest ancestor that is a row (seen before)
            prefix = prefix.rsplit(".", 1)[0]
            parent = first_row.get(prefix)
        parents[info.name] = parent
        depth[info.name] = 0 if parent is None else depth[parent] + 1
    children = set(parents.values())
    # the search rule (model.js applies the same one): a case-insensitive substring
    hit = {info.name for info in table.rows if query.strip().lower() in info.name.lower()}
    shown = set(hit)
    for name in hit:
        parent = parents[name]
        while parent is not None and parent not in shown:
            shown.add(parent)
            parent = parents[parent]
    searching = bool(query.strip())
    return [TreeRow(info, depth[info.name], parents[info.name], info.name in children,
                    layer_href(info.name, model), info.name in shown, searching and info.name in hit)
            for info in table.rows]


@router.get("/")
def model_page(request: Request, state: Service, model: str | None = None, q: str = "") -> Response:
    entry = state.model(model)
    table = state.layer_table(entry)
    link_model = None if entry is state.model() else entry.name
    rows = tree(table, q, link_model)
    return render(request, "model.html", title=entry.name, entry=entry, table=table, rows=rows, q=q,
                  shown=sum(r.shown for r in rows),
                  auto_href=layer_href(table.auto.name, link_model) if table.auto else None,
                  input_size="×".join(map(str, entry.model.input_size)),
                  classes=len(entry.model.labels) if entry.model.labels else None)


@router.get("/api/model/layers")
def api_layers(state: Service, model: str | None = None) -> list[dict[str, object]]:
    return state.layer_table(state.model(model)).as_json()
