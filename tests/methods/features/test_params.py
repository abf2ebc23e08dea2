"""Parameterizations: range, starts, exact inverses, Lucid's spectrum scaling and colour matrix."""

from __future__ import annotations

import pytest
import torch

from convscope.data import load_image
from convscope.errors import BadArgument
from convscope.methods.features import FourierImage, PixelImage, image_param
from convscope.methods.features.params import color_matrix, fft_scale


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Share of the (mean-removed) spectrum's energy above a quarter of the Nyquist frequency."""
    spec = torch.fft.rfft2(images - images.mean((-2, -1), keepdim=True)).abs().pow(2)
    h, w = images.shape[-2:]
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None] ** 2).sqrt()
    return spec[..., f > 0.125].sum() / spec.sum()


@pytest.mark.parametrize("kind", ["pixel", "fourier"])
def test_images_are_in_range_grey_at_zero_and_seeded(kind: str) -> None:
    grey = image_param(kind, 2, (12, 16), start="zeros")()
    assert grey.shape == (2, 3, 12, 16) and torch.allclose(grey, torch.full_like(grey, 0.5))
    a = image_param(kind, 2, 16, start="noise", std=3.0, generator=_gen(1))()
    b = image_param(kind, 2, 16, start="noise", std=3.0, generator=_gen(1))()
    c = image_param(kind, 2, 16, start="noise", std=3.0, generator=_gen(2))()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.01


@pytest.mark.parametrize("kind", ["pixel", "fourier"])
def test_start_from_an_image_reproduces_it(kind: str) -> None:
    cat = load_image("sample:cat")
    param = image_param(kind, 2, (60, 90), start=cat)
    want = torch.nn.functional.interpolate(cat[None], size=(60, 90), mode="bilinear", antialias=True,
                                           align_corners=False).clamp(0, 1)
    assert torch.allclose(param(), want.expand(2, -1, -1, -1), atol=1e-3)


def test_assign_inverts_the_fourier_parameterization_exactly() -> None:
    param = FourierImage(3, (20, 30), std=2.0, generator=_gen())
    images = param().detach()
    other = FourierImage(3, (20, 30), start="zeros")
    other.assign(images)
    assert torch.allclose(other(), images, atol=1e-5)


def test_fourier_noise_follows_one_over_f_and_decay_smooths() -> None:
    """Lucid's scaling: amplitude ~ 1/f, so a noise start has mostly low frequencies; a larger
    decay makes it smoother, and a pixel-noise start is white (flat spectrum)."""
    scale = fft_scale((64, 64), 1.0)
    assert scale[0, 1] == pytest.approx(64.0) and scale[0, 32] == pytest.approx(1 / 0.5)
    assert scale[0, 0] == scale[0, 1]  # DC is clamped at the lowest frequency, not infinite
    f1 = FourierImage(4, 64, std=0.5, generator=_gen())()
    f2 = FourierImage(4, 64, std=0.5, generator=_gen(), decay=2.0)()
    px = PixelImage(4, 64, std=0.5, generator=_gen())()
    assert _high_frequency_energy(f2) < _high_frequency_energy(f1) < 0.5 * _high_frequency_energy(px)


def test_colour_matrix_is_lucids_normalized_svd_sqrt() -> None:
    m = color_matrix()
    assert m.norm(dim=0).max() == pytest.approx(1.0)
    assert m[0, 0] == pytest.approx(0.26 / (0.26**2 + 0.27**2 + 0.27**2) ** 0.5, rel=1e-5)
    # decorrelated channel 0 is (nearly) luminance: equal weight on R, G, B
    assert m[:, 0].std() / m[:, 0].mean() < 0.05
    assert torch.linalg.matrix_rank(m) == 3
    plain = FourierImage(1, 16, decorrelate=False, std=1.0, generator=_gen())()
    mixed = FourierImage(1, 16, decorrelate=True, std=1.0, generator=_gen())()
    assert not torch.allclose(plain, mixed)


def test_clamped_pixels_are_projected_back_into_range() -> None:
    param = PixelImage(1, 8, squash="clamp", start="zeros")
    with torch.no_grad():
        param.pixels.add_(torch.linspace(-2, 2, 192).view(1, 3, 8, 8))
    param.project()
    img = param()
    assert img.min() == 0 and img.max() == 1


def test_parameters_are_the_only_leaves_and_get_gradients() -> None:
    for param in (PixelImage(2, 8, generator=_gen()), FourierImage(2, 8, generator=_gen())):
        (leaf,) = param.parameters()
        assert leaf.requires_grad and leaf.is_leaf
        (g,) = torch.autograd.grad(param()[:, 0].sum(), [leaf])
        assert g.abs().sum() > 0


@pytest.mark.parametrize(("args", "needle"), [
    (("voxel", 1, 8), "pixel"),
    (("pixel", 1, 1), "2x2"),
    (("pixel", 1, 8), "sigmoid"),
])
def test_bad_arguments(args: tuple, needle: str) -> None:
    options = {"squash": "tanh"} if needle == "sigmoid" else {}
    with pytest.raises(BadArgument, match=needle):
        image_param(*args, **options)
    with pytest.raises(BadArgument, match="start"):
        PixelImage(1, 8, start="gray")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="NaN"):
        PixelImage(1, 8, start=torch.full((3, 8, 8), float("nan")))
