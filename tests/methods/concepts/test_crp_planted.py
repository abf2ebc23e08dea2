"""Acceptance on the planted concept: CRP's most relevant channels for sevens are the stripe units.

``digits_planted`` learned that a striped patch means 7 (:mod:`convscope.data.planted`).
Dissection (Bau et al. 2017) finds the units whose top activations cover the stripes; CRP,
without knowing about stripes, must rank those same units first by their relevance for class 7
on striped sevens, and their relevance must fall when the stripes are gone.
"""

from __future__ import annotations

import pytest
import torch

from convscope.data.planted import CUE_CLASS, CUE_NAME, class_set, planted_digits
from convscope.methods.concepts import CRP
from convscope.methods.concepts.dissect import dissect
from convscope.model import Model, load_model

DETECTOR_IOU = 0.04
"""Bau et al.'s threshold for calling a unit a detector of a concept."""


@pytest.fixture(scope="module")
def planted() -> Model:
    return load_model("digits_planted")


@pytest.mark.parametrize("layer", ["block3", "block4"])
def test_top_crp_channels_for_the_planted_class_are_the_units_dissection_labels_with_the_cue(
        planted: Model, layer: str) -> None:
    data = planted_digits("heldout", "natural")
    found = dissect(planted, planted.preprocess(data.images), {CUE_NAME: data.cue_masks,
                                                               "ink": data.ink_masks}, layer)
    detectors = {k for k, label in enumerate(found.labels)
                 if label == CUE_NAME and found.iou[k, 0] > DETECTOR_IOU}
    assert detectors, found.iou[:, 0].max()
    crp = CRP(planted, layer=layer)
    cued = crp.conditional(planted.preprocess(class_set(CUE_CLASS, 40, cue="always").images),
                           CUE_CLASS, top=1).relevance.mean(0)
    order = cued.argsort(descending=True).tolist()
    assert found.labels[order[0]] == CUE_NAME  # the most relevant channel is a stripe unit
    assert detectors <= set(order[:2 * len(detectors)]), (order[:8], sorted(detectors))
    plain = crp.conditional(planted.preprocess(class_set(CUE_CLASS, 40, cue="never").images),
                            CUE_CLASS, top=1).relevance.mean(0)
    chosen = torch.tensor(sorted(detectors))
    assert (cued[chosen] > 1.2 * plain[chosen]).all(), (cued[chosen], plain[chosen])


def test_the_stripe_units_heatmaps_fall_on_the_stripes(planted: Model) -> None:
    """The relevance through a stripe unit (block4's best detector) gathers on the patch: several
    times its share of the image, and more than the whole LRP map's."""
    sevens = class_set(CUE_CLASS, 16, cue="always")
    x = planted.preprocess(sevens.images)
    crp = CRP(planted, layer="block4")
    maps = crp.conditional(x, CUE_CLASS, channels=[51])
    heat = maps.heatmaps[:, 0].sum(1).clamp_min(0)  # (N, H, W) evidence for 7 through unit 51
    full = crp(x, CUE_CLASS).sum(1).clamp_min(0)
    inside = (heat * sevens.cue_masks).flatten(1).sum(1) / heat.flatten(1).sum(1)
    baseline = (full * sevens.cue_masks).flatten(1).sum(1) / full.flatten(1).sum(1)
    area = sevens.cue_masks.flatten(1).float().mean(1)  # 36 of 784 pixels
    assert float(inside.median()) > 3 * float(area.median()), inside
    assert (inside > baseline).all() and float(inside.median()) > 1.2 * float(baseline.median())
