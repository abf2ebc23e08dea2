"""Preprocess: the three resize modes keep (or, for stretch, drop) the aspect ratio, and the box
each reports is where the model's input sits on the original image, so maps go back in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.errors import BadArgument
from convscope.model import Model, Preprocess
from convscope.render.heatmap import place_map
from convscope.tasks.explain import explain


def _photo_with_square(height: int, width: int, top: int, left: int, side: int) -> torch.Tensor:
    image = torch.zeros(3, height, width)
    image[:, top:top + side, left:left + side] = 1.0
    return image


@pytest.mark.parametrize(("resize", "box"), [
    ("crop", (0.0, 100.0, 400.0, 500.0)),  # the centred 400x400 square of a 600x400 photo
    ("stretch", (0.0, 0.0, 400.0, 600.0)),
    ("letterbox", (-100.0, 0.0, 500.0, 600.0)),  # 600x600 around it: 100 px border above/below
])
def test_box_of_a_landscape_photo(resize: str, box: tuple[float, ...]) -> None:
    assert Preprocess((60, 60), resize=resize).box(400, 600) == box  # type: ignore[arg-type]


def test_crop_fraction_and_non_square_inputs() -> None:
    assert Preprocess((224, 224), crop_fraction=0.875).box(256, 256) == (16.0, 16.0, 240.0, 240.0)
    top, left, bottom, right = Preprocess((30, 60)).box(400, 600)  # 1:2 input from a 3:2 photo
    assert (right - left) == 2 * (bottom - top) and right - left == 600


@pytest.mark.parametrize("resize", ["crop", "letterbox", "stretch"])
def test_fit_puts_a_known_square_where_the_box_says(resize: str) -> None:
    """A bright 40x40 square at (top 180, left 280) of a 400x600 photo: its centre in the model
    input is where the box geometry maps (200, 300) to, and it stays square unless stretched."""
    spec = Preprocess((100, 100), mean=(0.0,) * 3, resize=resize)  # type: ignore[arg-type]
    fitted = spec.fit(_photo_with_square(400, 600, 180, 280, 40))
    assert fitted.shape == (3, 100, 100)
    top, left, bottom, right = spec.box(400, 600)
    want_y = (200 - top) / (bottom - top) * 100
    want_x = (300 - left) / (right - left) * 100
    mass = fitted[0]
    ys, xs = torch.arange(100.0), torch.arange(100.0)
    got_y = float((mass.sum(1) * ys).sum() / mass.sum()) + 0.5
    got_x = float((mass.sum(0) * xs).sum() / mass.sum()) + 0.5
    assert got_y == pytest.approx(want_y, abs=0.5) and got_x == pytest.approx(want_x, abs=0.5)
    rows, cols = (mass > 0.5).any(1).sum(), (mass > 0.5).any(0).sum()
    if resize == "stretch":
        assert cols < rows  # squashed: the photo is 1.5x wider than the input
    else:
        assert abs(int(rows) - int(cols)) <= 1


def test_letterbox_border_is_the_mean_colour() -> None:
    spec = Preprocess((60, 60), mean=(0.2, 0.4, 0.6), resize="letterbox")
    fitted = spec.fit(torch.ones(3, 40, 60))
    assert torch.allclose(fitted[:, 0, 0], torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(fitted[:, 30, 30], torch.ones(3))


def test_bad_preprocess_values() -> None:
    with pytest.raises(BadArgument, match="resize"):
        Preprocess(resize="squash")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="crop_fraction"):
        Preprocess(crop_fraction=0)
    with pytest.raises(BadArgument, match="input_size"):
        Preprocess(input_size=(0, 4))


def test_gray_model_gets_one_channel_statistics() -> None:
    spec = Preprocess((8, 8), channels=1)
    assert len(spec.mean) == 1 and len(spec.std) == 1


class _TopLeftBrightness(nn.Module):
    """Score = brightness of the top-left quarter of its 32x32 input: the saliency map lives
    exactly there, so its place on the original photo is known."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., :16, :16] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) * self.mask).flatten(1).sum(1, keepdim=True).expand(-1, 2)


def test_explanation_of_a_600x400_photo_is_drawn_on_it_in_place() -> None:
    torch.manual_seed(0)
    model = Model(_TopLeftBrightness(), preprocess=Preprocess((32, 32)))
    photo = torch.rand(3, 400, 600)
    result = explain(model, photo, method="saliency", target=0)
    (framing,) = result.framings or []
    assert framing.box == (0.0, 100.0, 400.0, 500.0)
    picture = result.overlay(0)
    assert picture.size == (600, 400)
    placed, seen = place_map(result.values[0], (400, 600), framing.box)
    support = (placed[0] > 1e-6 * placed.max()) & seen
    rows, cols = support.any(1).nonzero(), support.any(0).nonzero()
    # the model's top-left quarter = rows 0..200, columns 100..300 of the photo, plus half a
    # model pixel (6.25 photo pixels) of bilinear blur past its inner edges
    assert rows.min() == 0 and 200 <= rows.max() <= 206
    assert cols.min() == 100 and 300 <= cols.max() <= 306
    assert seen[:, 100:500].all() and not seen[:, :100].any() and not seen[:, 500:].any()
    pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255
    expected_unseen = (photo[:, :, :100] * 0.5 * 255).round() / 255  # darkened, not coloured
    assert torch.allclose(pixels[:, :, :100], expected_unseen, atol=1 / 255)


def test_a_ready_batch_has_no_framing() -> None:
    model = Model(_TopLeftBrightness(), preprocess=Preprocess((32, 32)))
    result = explain(model, model.preprocess(torch.rand(3, 32, 32)), method="saliency", target=0)
    assert result.framings is None and result.overlay(0).size == (32, 32)
