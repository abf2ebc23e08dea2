"""Acceptance on ``digits_planted`` (its sevens carry a striped patch, 95% of them): concept
discovery without labels finds a concept that sits on the stripes and matters most for "7"."""

from __future__ import annotations

import pytest

import convscope
from convscope.data.planted import CUE_CLASS, class_set

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sevens():  # type: ignore[no-untyped-def]
    return class_set(CUE_CLASS, n=40, cue="natural")  # held-out sevens, the cue as in training


@pytest.mark.parametrize("importance", ["sobol", "gradient"])
def test_the_most_important_concept_for_seven_covers_the_stripes(sevens, importance: str) -> None:
    model = convscope.load_model("digits_planted")
    found = convscope.concepts(model, list(sevens.images), layer="block2", k=5, target=CUE_CLASS,
                               importance=importance, designs=16)  # type: ignore[arg-type]
    masks = sevens.cue_masks[sevens.cued]  # (n, 28, 28), n = 39 of 40
    heat = found.heatmaps[sevens.cued]  # (n, k, 28, 28), concepts by importance
    peak_inside = masks.flatten(1).gather(1, heat.flatten(2).argmax(2)).float().mean(0)  # (k,)
    mass_inside = ((heat * masks[:, None]).sum((2, 3)) / heat.sum((2, 3))).mean(0)
    share = float(masks.float().mean())  # the stripes' share of the image, about 5%
    assert int(found.importances.argmax()) == 0  # sorted: concept 0 is the most important
    assert int(peak_inside.argmax()) == 0 and float(peak_inside[0]) >= 0.7
    assert float(mass_inside[0]) >= 3 * share
    assert float(peak_inside[1:].max()) < 0.2  # no other concept sits on the stripes
