"""Receptive-field patches: the unit's value depends on the pixels inside its box and no others."""

from __future__ import annotations

import pytest
import torch

from convscope.errors import BadArgument
from convscope.methods.dataset import crop_patches, scan, unit_boxes
from convscope.model import capture


def test_patch_is_exactly_what_the_top_unit_sees(fx) -> None:
    model, images = fx.int_model(), fx.int_images(12)
    top = scan(model, images, "conv2", k=3, batch_size=4).topk["conv2"]
    channel = 1
    rows, ys, xs = top.indices[channel].tolist(), top.ys[channel].tolist(), top.xs[channel].tolist()
    crops = crop_patches(model, "conv2", images[rows], list(zip(ys, xs)))
    boxes = unit_boxes(model, "conv2", list(zip(ys, xs)))
    g = torch.Generator().manual_seed(1)
    for row, y, x, crop, box in zip(rows, ys, xs, crops, boxes):
        assert torch.equal(crop, images[row][(..., *box.slices)])
        inside = torch.zeros(12, 12, dtype=torch.bool)
        inside[box.slices] = True
        noise = torch.rand(3, 12, 12, generator=g)
        outside_changed = torch.where(inside, images[row], noise)
        inside_changed = torch.where(inside, noise, images[row])
        with torch.no_grad(), capture(model, ["conv2"]) as rec:
            model(torch.stack([images[row], outside_changed, inside_changed]))
        act = rec["conv2"][:, channel, y, x]
        assert act[0] == act[1]  # pixels outside the box cannot move the unit
        assert act[0] != act[2]  # pixels inside do
    assert all(b.height <= 7 and b.width <= 7 for b in boxes)  # 3x3 then 3x3 stride 2: 7x7 field


def test_crop_patches_checks_its_arguments(fx) -> None:
    with pytest.raises(BadArgument):
        crop_patches(fx.int_model(), "conv2", fx.int_images(2), [(0, 0)])
