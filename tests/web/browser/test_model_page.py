"""The model page in Chromium: the tree renders, the search filters it (and the address keeps
the search), folding hides nested rows, the picker switches models, a link opens the layer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse


def visible_names(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#layer-tree tbody tr[data-name]", "rows => rows.filter(r => !r.hidden && r.offsetParent)"
        ".map(r => r.dataset.name)")


def test_the_tree_renders_and_the_search_filters_it(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/?model=efficientnet_lite0")
    names = visible_names(page)
    assert len(names) == 152 and names[:3] == ["_conv_stem", "_bn0", "_relu_stem"]
    row = page.locator('#layer-tree tr[data-name="_blocks.0._depthwise_conv"]')
    assert row.locator("td").nth(1).inner_text() == "Conv2d"
    assert row.locator("td").nth(2).inner_text() == "32×112×112"

    page.fill("#layer-search", "depthwise_CONV")
    shown = visible_names(page)
    assert "_blocks" in shown and "_blocks.15._depthwise_conv" in shown and "_conv_stem" not in shown
    assert all(n.endswith("_depthwise_conv") or n == "_blocks" or n.count(".") == 1 for n in shown)
    assert page.inner_text("#layer-count") == f"{len(shown)} of 152 layers"
    query = parse_qs(urlparse(page.url).query)
    assert query == {"model": ["efficientnet_lite0"], "q": ["depthwise_CONV"]}

    page.reload()  # the address is shareable: the server draws the same filtered tree
    assert visible_names(page) == shown and page.input_value("#layer-search") == "depthwise_CONV"

    page.fill("#layer-search", "nothing like this")
    assert visible_names(page) == [] and page.is_visible("#no-match")
    page.fill("#layer-search", "")
    assert len(visible_names(page)) == 152 and "q" not in parse_qs(urlparse(page.url).query)
    assert not page.console_errors


def test_folding_a_block_hides_what_is_inside(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/")  # digits_cnn: block1 holds block1.0 .. block1.2
    before = visible_names(page)
    page.click('#layer-tree tr[data-name="block1"] button.toggle')
    after = visible_names(page)
    assert set(before) - set(after) == {"block1.0", "block1.1", "block1.2"}
    page.click('#layer-tree tr[data-name="block1"] button.toggle')
    assert visible_names(page) == before


def test_the_picker_switches_models_and_a_link_opens_the_layer(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/?q=block2")
    assert page.inner_text("h1") == "digits_cnn"
    page.select_option("#model-picker", "efficientnet_lite0")
    page.wait_for_url("**/?model=efficientnet_lite0&q=block2")
    assert page.inner_text("h1") == "efficientnet_lite0"
    page.goto(f"{live_server}/")
    page.click('#layer-tree tr[data-name="block2.1"] a')
    page.wait_for_url(f"{live_server}/layers/block2.1")
    assert urlparse(page.url).path == "/layers/block2.1"
