"""The synthesis lab in Chromium: an adversarial job streams its progress to the end and draws its
pictures; a second job is cancelled from its button; the address reproduces the result."""

from __future__ import annotations

from typing import Any

from tests.web.pictures import image_drawn

SLOW = 60_000
"""ms to wait for a job on a busy machine."""


def test_run_an_adversarial_job_then_cancel_another(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/lab?kind=adversarial&image=sample:cat&target=3&eps=16/255&steps=150"
              "&early_stop=0&margin=0")
    page.click("#lab-run")
    first = page.locator("#lab-jobs .cs-job").first
    page.wait_for_function("() => document.querySelector('#lab-jobs .cs-job')?.dataset.status === 'done'",
                           timeout=SLOW)
    page.wait_for_function("() => document.querySelectorAll('#lab-result figure img').length === 3")
    page.wait_for_function("() => [...document.querySelectorAll('#lab-result img')].every(i => i.complete)")
    assert image_drawn(page, "#lab-result figure img")
    assert first.locator(".cs-job-status").inner_text() == "done"
    bar = first.locator("progress").evaluate("p => [p.value, p.max]")
    assert bar[0] == bar[1] >= 150  # the task's progress reached the page, to its end
    captions = page.locator("#lab-result figcaption").all_inner_texts()
    assert captions[:2] == ["original", "adversarial"] and captions[2].startswith("perturbation")
    assert "saved 8-bit PNG" in page.locator("#lab-result .verdict").inner_text()
    tables = page.locator("#lab-result table caption").all_inner_texts()
    assert tables == ["before", "after", "saved PNG, reloaded"]
    assert "run=1" in page.url and "eps=16%2F255" in page.url  # the address holds the settings

    # a long job on the larger model, cancelled from its own button while it runs
    page.select_option("select[name=model]", "efficientnet_lite0")
    page.fill("input[name=steps]", "400")
    page.fill("input[name=size]", "96")
    page.click("#lab-run")
    page.wait_for_function("() => document.querySelectorAll('#lab-jobs .cs-job').length === 2")
    second = page.locator("#lab-jobs .cs-job").first  # the newest job is on top
    page.wait_for_function("""() => /running [1-9]/.test(
        document.querySelector('#lab-jobs .cs-job .cs-job-status').textContent)""", timeout=SLOW)
    second.locator("button.cs-cancel").click()
    page.wait_for_function("() => document.querySelector('#lab-jobs .cs-job').dataset.status === 'cancelled'",
                           timeout=SLOW)
    assert second.locator(".cs-job-status").inner_text().startswith("cancelled")
    assert page.locator("#lab-result figure img").count() == 3  # the finished result stays
    assert not page.console_errors

    # the first job's address shows its result again, from the cache
    page.goto(f"{live_server}/lab?kind=adversarial&image=sample:cat&target=3&eps=16/255&steps=150"
              "&early_stop=0&margin=0&run=1")
    page.wait_for_function("() => document.querySelectorAll('#lab-result figure img').length === 3")
    page.wait_for_function("() => [...document.querySelectorAll('#lab-result img')].every(i => i.complete)")
    assert image_drawn(page, "#lab-result figure img")


def test_a_bad_setting_shows_the_servers_message(live_server: str, page: Any) -> None:
    page.goto(f"{live_server}/lab?kind=inversion")
    page.fill("input[name=layers]", "no_such_layer")
    page.click("#lab-run")
    page.wait_for_function("() => !document.getElementById('lab-error').hidden")
    assert "no_such_layer" in page.locator("#lab-error").inner_text()
    assert page.locator("#lab-jobs .cs-job").count() == 0
