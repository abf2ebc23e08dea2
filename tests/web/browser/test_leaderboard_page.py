"""The leaderboard page in Chromium: the form runs a job, the table, statements and plot appear,
and the address (run=1) shows the same result again from the cache."""

from __future__ import annotations

from typing import Any

from tests.web.pictures import image_drawn

SLOW = 60_000
"""ms to wait for a job on a busy machine."""
ADDRESS = ("/leaderboard?dataset=mnist5k&methods=saliency,gradcam&metrics=deletion_auc,insertion_auc"
           "&images=6&steps=3&batch_size=3")


def test_run_from_the_form_then_reload_the_address(live_server: str, page: Any) -> None:
    page.goto(live_server + ADDRESS)
    assert page.locator("header.cs-nav a.active").inner_text() == "Leaderboard"
    page.click("#board-run")
    page.wait_for_function("() => document.querySelector('#board-jobs .cs-job')?.dataset.status === 'done'",
                           timeout=SLOW)
    page.wait_for_function("() => document.querySelector('#board-result img')?.complete")
    assert image_drawn(page, "#board-result img")
    rows = page.locator("#board-result table tr").count()
    assert rows == 3  # the header and one row per method
    said = page.locator("#board-result .statements").inner_text()
    assert "deletion_auc (lower is better)" in said and "paired bootstrap" in said
    assert "run=1" in page.url
    page.goto(page.url)  # the address shows the result again (from the cache)
    page.wait_for_function("() => document.querySelectorAll('#board-result table tr').length === 3",
                           timeout=SLOW)
    assert not page.console_errors
