"""The HTML report says how to read it: a colour key for both overlay maps, and the caller's notes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from convscope.render.report import FAITHFULNESS_NOTE, Card, Section, colour_bar, html_report


def test_colour_bars_run_from_low_to_high_through_white_for_signed_maps() -> None:
    signed = np.asarray(colour_bar("signed", width=101)).astype(int)
    left, middle, right = signed[0, 0], signed[0, 50], signed[0, -1]
    assert left[2] > 200 and left[0] < 50  # blue: against the class
    assert right[0] > 200 and right[2] < 50  # red: for it
    assert (middle > 240).all()  # white: no effect
    unsigned = np.asarray(colour_bar("unsigned", width=101)).astype(int)
    assert unsigned[0, 0].sum() < 30 and unsigned[0, -1].sum() > 500  # inferno: black to pale yellow


def test_the_page_has_the_colour_key_and_the_notes() -> None:
    picture = Image.new("RGB", (8, 8))
    section = Section("cat", picture, cards=[Card("gradcam", picture, ["deletion AUC 0.1 ↓"])])
    page = html_report("r", [section], notes=[FAITHFULNESS_NOTE])
    assert 'alt="unsigned colour map"' in page and 'alt="signed colour map"' in page
    for words in ("how much a pixel matters", "against", "for or against the class"):
        assert words in page
    assert "low deletion AUC" in page and "high insertion AUC" in page
    assert "class=\"notes\"" not in html_report("r", [section])
