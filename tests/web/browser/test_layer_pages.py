"""The layer and unit pages in Chromium: feature maps drawn and re-sorted, a visualization tile
filled in by its job, the unit's mask and classes shown."""

from __future__ import annotations

from typing import Any

from tests.web.pictures import image_drawn

STEPS = "steps=8"
"""Tiny optimizations: the tiles' jobs take a fraction of a second on digits_cnn."""


def _order(page: Any) -> list[int]:
    return [int(c) for c in page.eval_on_selector_all(
        "#featuremaps .fmap", "els => els.map(e => e.dataset.channel)")]


def test_feature_maps_are_drawn_and_sorting_changes_their_order(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/layers/block2?image=sample:coffee&{STEPS}")
    page.wait_for_function("""() => [...document.querySelectorAll('#featuremaps img')].slice(0, 12)
                              .every(i => i.complete && i.naturalWidth > 0)""")
    by_mean = _order(page)
    means = page.eval_on_selector_all("#featuremaps .fmap", "els => els.map(e => +e.dataset.mean)")
    assert len(by_mean) == 32 and means == sorted(means, reverse=True)
    page.click('#sorts a[data-sort="max"]')
    page.wait_for_url("**sort=max**")
    by_max = _order(page)
    maxes = page.eval_on_selector_all("#featuremaps .fmap", "els => els.map(e => +e.dataset.max)")
    assert maxes == sorted(maxes, reverse=True) and by_max != by_mean
    assert sorted(by_max) == list(range(32))
    page.click('#sorts a[data-sort="index"]')
    page.wait_for_url("**sort=index**")
    assert _order(page) == list(range(32))
    assert "Filters cannot be shown" in page.inner_text("#filters-reason")
    assert not page.console_errors


def test_a_visualization_tile_fills_in_after_its_job(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/layers/block1.0?{STEPS}")
    assert image_drawn(page, "#filters")
    tile = '#visualizations .vis[data-channel="0"]'
    page.wait_for_selector(f'{tile}[data-state="done"]', timeout=30_000)
    assert image_drawn(page, f"{tile} img")
    page.reload()  # the second visit is served from the cache
    page.wait_for_selector(f'{tile}[data-state="done"]', timeout=5_000)
    assert image_drawn(page, f"{tile} img")
    assert not page.console_errors


def test_the_unit_page_shows_its_mask_and_classes(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/layers/block4/3?image=sample:coffee&{STEPS}")
    page.wait_for_function("() => { const i = document.querySelector('#mask'); "
                           "return i.complete && i.naturalWidth > 0; }")
    page.wait_for_selector('#classes[data-state="done"]', timeout=30_000)
    assert page.get_attribute("#classes .method", "data-method") == "weights"
    rows = page.locator("#classes .supports tr[data-class]")
    assert rows.count() == 5
    page.wait_for_selector('#visualizations .vis[data-seed="3"][data-state="done"]', timeout=30_000)
    assert image_drawn(page, "#visualizations .vis img")
    assert not page.console_errors


def test_visualization_tiles_are_asked_for_only_when_scrolled_into_view(live_server: str,
                                                                        page: Any) -> None:
    page.goto(f"{live_server}/layers/block3?image=sample:coffee&{STEPS}")
    page.wait_for_function("document.readyState === 'complete'")
    states = page.eval_on_selector_all("#visualizations .vis", "els => els.map(e => e.dataset.state || '')")
    assert len(states) == 64 and set(states) == {""}  # below the fold: nothing asked yet
    last = '#visualizations .vis[data-channel="63"]'
    page.locator(last).scroll_into_view_if_needed()
    page.wait_for_selector(f'{last}[data-state="done"]', timeout=30_000)
    assert image_drawn(page, f"{last} img")
    assert not page.console_errors
