"""A class map drawn over its image: each class its palette colour, background untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.errors import BadArgument
from convscope.render import segmentation_overlay
from convscope.render.segments import PALETTE, class_colors


def test_classes_get_their_colour_and_background_shows_the_image() -> None:
    image = torch.full((1, 4, 6), 0.5)
    classes = torch.full((4, 6), 10)
    classes[0, 0], classes[3, 5] = 0, 7
    pixels = np.asarray(segmentation_overlay(image, classes, background=10, alpha=1.0))
    assert pixels.shape == (4, 6, 3)
    assert tuple(pixels[0, 0]) == PALETTE[0] and tuple(pixels[3, 5]) == PALETTE[7]
    assert (pixels[1:3] == 128).all()  # gray 0.5 where the class is background
    half = np.asarray(segmentation_overlay(image, classes, background=10, alpha=0.5))
    assert np.allclose(half[0, 0], (np.array(PALETTE[0]) + 127.5) / 2, atol=1)
    rgb, shown = class_colors(classes)  # no background: everything is coloured
    assert shown.all()  # class 10 cycles back to the first colour
    assert torch.allclose(rgb[:, 1, 1] * 255, torch.tensor(PALETTE[0], dtype=torch.float))


def test_wrong_maps_are_refused() -> None:
    with pytest.raises(BadArgument, match="does not match"):
        segmentation_overlay(torch.zeros(1, 4, 6), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(BadArgument, match="integer map"):
        class_colors(torch.zeros(4, 6))
