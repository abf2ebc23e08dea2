"""Robustness transforms: exact geometry, per-image seeded randomness, gradients; Gaussian blur."""

from __future__ import annotations

import pytest
import torch

from convscope.methods.features import (
    Blur,
    Compose,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    gaussian_blur,
    standard_transforms,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 4, h: int = 20, w: int = 20) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=_gen(9)).expand(b, -1, -1, -1).contiguous()


def test_jitter_crops_each_image_at_its_own_offset() -> None:
    x = _batch(6)
    out = Jitter(4)(x, _gen())
    assert out.shape == (6, 3, 16, 16)
    for img in out:  # every output is some exact crop of the input
        assert any(torch.equal(img, x[0, :, i:i + 16, j:j + 16]) for i in range(5) for j in range(5))
    assert len({tuple(img.flatten()[:5].tolist()) for img in out}) > 1  # not one shared draw


def test_pad_then_zero_rotation_and_unit_scale_are_identities() -> None:
    x = _batch(2, 10, 14)
    padded = Pad(3)(x, _gen())
    assert padded.shape == (2, 3, 16, 20) and torch.all(padded[..., :3, :] == 0.5)
    assert torch.allclose(RandomRotate((0.0,))(x, _gen()), x, atol=1e-5)
    assert torch.allclose(RandomScale((1.0,))(x, _gen()), x, atol=1e-5)


def test_quarter_turn_moves_pixels_exactly_and_zoom_out_fills_grey() -> None:
    x = _batch(1, 12, 12)
    turned = RandomRotate((90.0,))(x, _gen())
    assert any(torch.allclose(turned, torch.rot90(x, k, (2, 3)), atol=1e-5) for k in (1, 3))
    small = RandomScale((0.5,))(x, _gen())
    assert torch.allclose(small[..., 0, :], torch.full_like(small[..., 0, :], 0.5), atol=1e-5)
    assert not torch.allclose(small[..., 6, 6], torch.full_like(small[..., 6, 6], 0.5))


def test_standard_transforms_are_seeded_differentiable_and_per_image() -> None:
    x = _batch(4, 64, 64).requires_grad_(True)
    t = standard_transforms()
    a, b, c = t(x, _gen(1)), t(x, _gen(1)), t(x, _gen(2))
    assert a.shape == (4, 3, 64 + 24 - 12, 64 + 24 - 12)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a[0], a[1])  # each image gets its own shift, zoom and angle
    (g,) = torch.autograd.grad(a.sum(), x)
    assert torch.isfinite(g).all() and (g.flatten(1).abs().sum(1) > 0).all()


def test_gaussian_blur_keeps_constants_and_the_mean_and_removes_high_frequencies() -> None:
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat)
    noise = torch.rand(2, 3, 32, 32, generator=_gen())
    blurred = Blur(1.0)(noise, _gen())
    assert blurred.mean().item() == pytest.approx(noise.mean().item(), abs=0.01)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2 * 1.0
    assert gaussian_blur(checker.expand(1, 3, -1, -1), 1.0).std() < 0.01 * checker.std()
    assert torch.equal(gaussian_blur(noise, 0.0), noise)
    assert torch.equal(Compose(())(noise, _gen()), noise)
