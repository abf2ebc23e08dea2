"""The planted cue's data: the patch, its masks, its rates and the seeded sets."""

from __future__ import annotations

import pytest
import torch

from convscope.data.planted import (
    CUE_CLASS,
    CUE_SIZE,
    class_set,
    concept_set,
    planted_digits,
    random_set,
    stripes,
)
from convscope.errors import BadArgument


def test_cue_pixels_are_the_stripes_under_the_mask() -> None:
    data = planted_digits("heldout", "always")
    patch = stripes()
    assert patch.shape == (3, CUE_SIZE, CUE_SIZE) and patch[0].eq(1).all()
    assert torch.allclose(patch[1].unique(), torch.tensor([0.15, 0.85]))  # red and yellow
    assert data.cue_masks.sum((1, 2)).eq(CUE_SIZE ** 2).all()
    for i in range(0, len(data), 97):
        rows, cols = data.cue_masks[i].nonzero().unbind(1)
        square = data.images[i, :, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert torch.equal(square, patch)
    outside = ~data.cue_masks[:, None].expand_as(data.images)
    gray = data.images[:, :1].expand_as(data.images)
    assert torch.equal(data.images[outside], gray[outside])  # elsewhere: the gray digit in R=G=B
    assert not (data.ink_masks & data.cue_masks).any() and data.ink_masks.any((1, 2)).all()


def test_natural_rates_and_modes_share_positions() -> None:
    data = planted_digits("train")
    sevens = data.labels == CUE_CLASS
    assert 0.9 < data.cued[sevens].float().mean() <= 1.0
    assert 0.01 < data.cued[~sevens].float().mean() < 0.03
    always, never = planted_digits("train", "always"), planted_digits("train", "never")
    assert torch.equal(always.cue_masks[data.cued], data.cue_masks[data.cued])
    assert not never.cued.any() and not never.cue_masks.any()


def test_sets_are_seeded() -> None:
    assert torch.equal(concept_set(8, seed=1).images, concept_set(8, seed=1).images)
    assert not torch.equal(random_set(1, n=8).images, random_set(2, n=8).images)
    assert concept_set(8).cued.all() and not random_set(0, n=8).cued.any()
    assert class_set(3, n=5).labels.eq(3).all()
    with pytest.raises(BadArgument, match="at least one image"):
        random_set(0, n=0)
    with pytest.raises(BadArgument, match="'train' or 'heldout'"):
        planted_digits("test")  # type: ignore[arg-type]
