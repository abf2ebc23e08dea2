"""The model page ``/`` and ``/api/model/layers``: the layer tree, search, model picker, errors."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from convscope.model import list_layers
from convscope.tasks.layers import layer_table
from convscope.web.model_page import layer_href, tree
from tests.cli.runner import run

HTML = {"accept": "text/html"}


def rows_of(html: str) -> list[tuple[str, bool]]:
    """(layer name, hidden) of each row of the tree, in order."""
    return [(unescape(m.group(1)), " hidden" in m.group(0))
            for m in re.finditer(r'<tr data-name="([^"]+)"[^>]*>', html)]


@pytest.mark.parametrize("model", ["digits_cnn", "efficientnet_lite0"])
def test_api_layers_is_what_the_cli_prints(client: TestClient, capsys: pytest.CaptureFixture[str],
                                           model: str) -> None:
    answer = client.get("/api/model/layers", params={"model": model})
    code, out, err = run(capsys, "layers", "--model", model, "--json")
    assert code == 0, err
    assert answer.status_code == 200 and answer.json() == json.loads(out)


def test_the_default_model_is_the_first(client: TestClient) -> None:
    assert client.get("/api/model/layers").json() == client.get(
        "/api/model/layers", params={"model": "digits_cnn"}).json()


def test_every_layer_has_a_row_with_type_shape_params_and_link(app: Any, client: TestClient) -> None:
    page = client.get("/", headers=HTML)
    assert page.status_code == 200
    model = app.state.cs.models["digits_cnn"].model
    layers = list_layers(model)
    assert [name for name, _ in rows_of(page.text)] == [info.name for info in layers]
    assert not any(hidden for _, hidden in rows_of(page.text))
    for info in layers:
        row = re.search(rf'<tr data-name="{re.escape(info.name)}".*?</tr>', page.text, re.S)
        assert row is not None
        cells = row.group(0)
        assert f'href="/layers/{info.name}"' in cells and f">{info.type}<" in cells
        assert f">{info.params:,}<" in cells
        shape = "×".join(map(str, info.output_shape)) if info.output_shape else "–"
        assert f">{shape}<" in cells
    auto = layer_table(model).auto
    assert auto is not None and f'>{auto.name}</a>: {auto.reason}' in unescape(page.text)


def test_search_hides_the_rows_that_do_not_match_but_keeps_their_parents(client: TestClient) -> None:
    page = client.get("/", params={"model": "efficientnet_lite0", "q": "_BLOCKS.3._depthwise"},
                      headers=HTML)
    assert page.status_code == 200
    rows = dict(rows_of(page.text))
    shown = {name for name, hidden in rows.items() if not hidden}
    assert shown == {"_blocks", "_blocks.3", "_blocks.3._depthwise_conv"}
    assert f"{len(shown)} of {len(rows)} layers" in page.text
    assert 'value="_BLOCKS.3._depthwise"' in page.text  # the box shows the search
    assert 'href="/layers/_blocks.3._depthwise_conv?model=efficientnet_lite0"' in page.text
    nothing = client.get("/", params={"q": "no-such-layer"}, headers=HTML).text
    assert all(hidden for _, hidden in rows_of(nothing))
    assert re.search(r'<p class="muted" id="no-match">', nothing)


def test_model_picker_lists_the_served_models(client: TestClient) -> None:
    page = client.get("/", params={"model": "efficientnet_lite0"}, headers=HTML).text
    options = re.findall(r'<option value="([^"]+)"( selected)?>', page)
    assert options == [("digits_cnn", ""), ("efficientnet_lite0", " selected")]
    assert "<h1>efficientnet_lite0</h1>" in page and "4,652,008 parameters" in page


def test_one_model_has_no_picker(make_app: Any) -> None:
    with TestClient(make_app(models=("digits_cnn",)), base_url="http://127.0.0.1") as one:
        page = one.get("/", headers=HTML)
    assert page.status_code == 200 and "model-picker" not in page.text


def test_unknown_model_is_a_404_with_one_line(client: TestClient) -> None:
    page = client.get("/", params={"model": "nope"}, headers=HTML)
    assert page.status_code == 404 and "model &#39;nope&#39; is not served" in page.text
    api = client.get("/api/model/layers", params={"model": "nope"})
    assert api.status_code == 404
    assert api.json()["error"] == "model 'nope' is not served; models: digits_cnn, efficientnet_lite0"


def test_tree_nests_dotted_names_and_repeated_calls() -> None:
    from convscope.model import LayerInfo
    from convscope.tasks.layers import LayerTable

    names = ["a", "a.b", "a.b.c", "d:0", "d:1", "d.e", "f.g"]  # d runs twice; f is no row
    table = LayerTable("m", [LayerInfo(n, "T", 0, (1,)) for n in names], None, 0)
    rows = {r.info.name: r for r in tree(table, "C")}
    assert [(n, rows[n].parent, rows[n].depth) for n in names] == [
        ("a", None, 0), ("a.b", "a", 1), ("a.b.c", "a.b", 2), ("d:0", None, 0), ("d:1", None, 0),
        ("d.e", "d:0", 1), ("f.g", None, 0)]
    assert {n for n, r in rows.items() if r.shown} == {"a", "a.b", "a.b.c"}
    assert [n for n, r in rows.items() if r.match] == ["a.b.c"]
    assert rows["a"].has_children and not rows["a.b.c"].has_children
    assert all(r.shown and not r.match for r in tree(table, "  "))  # blank search: everything


def test_layer_links_quote_the_name() -> None:
    assert layer_href("features.0:1", None) == "/layers/features.0:1"
    assert layer_href("a b", "m 2") == "/layers/a%20b?model=m+2"
