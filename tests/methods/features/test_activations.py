"""Feature maps and activation masks: the maps are capture's activations, sorting and top-N
are consistent, quantile masks keep the asked-for fraction, thresholds mean ``>=``, the model is
left untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convscope.data import load_image
from convscope.errors import BadArgument, BadLayer
from convscope.methods.features.activations import activation_mask, feature_maps
from convscope.model import Model, capture, guarded


@pytest.fixture(scope="module")
def cat(lite0: Model) -> torch.Tensor:
    return lite0.preprocess(load_image("sample:cat"))


def test_feature_maps_equal_captured_activations(lite0: Model, cat: torch.Tensor) -> None:
    fm = feature_maps(lite0, cat, "_blocks.3")
    with guarded(lite0), torch.no_grad(), capture(lite0, "_blocks.3") as acts:
        lite0(cat)
    expected = acts["_blocks.3"]
    assert fm.maps.shape == (1, 40, 28, 28) and fm.total_channels == 40
    torch.testing.assert_close(fm.maps, expected, rtol=0, atol=0)
    assert torch.equal(fm.channels, torch.arange(40))
    torch.testing.assert_close(fm.mean, expected.mean((2, 3)))
    torch.testing.assert_close(fm.max, expected.amax((2, 3)))
    torch.testing.assert_close(fm.min, expected.amin((2, 3)))
    assert not fm.maps.requires_grad


@pytest.mark.parametrize("key", ["mean", "max"])
def test_sorting_and_top(lite0: Model, cat: torch.Tensor, key: str) -> None:
    full = feature_maps(lite0, cat, "_blocks.3")
    top = feature_maps(lite0, cat, "_blocks.3", sort=key, top=8)  # type: ignore[arg-type]
    stat = getattr(top, key)[0]
    assert top.maps.shape == (1, 8, 28, 28) and top.channels.shape == (8,)
    assert (stat[:-1] >= stat[1:]).all()
    assert stat[-1] >= getattr(full, key)[0].sort(descending=True).values[7]
    torch.testing.assert_close(top.maps, full.maps[:, top.channels], rtol=0, atol=0)
    assert len(top.captions(0)) == 8 and top.captions(0)[0].startswith(f"ch {int(top.channels[0])}")


def test_batch_sorting_uses_the_batch_average(tiny: Model) -> None:
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    fm = feature_maps(tiny, x, "relu1", sort="mean")
    assert fm.maps.shape == (3, 6, 16, 16) and fm.mean.shape == (3, 6)
    avg = fm.mean.mean(0)
    assert (avg[:-1] >= avg[1:]).all()
    picked = feature_maps(tiny, x, "relu1", channels=[4, 1])
    assert picked.channels.tolist() == [4, 1]
    torch.testing.assert_close(picked.maps, fm.maps[:, [fm.channels.tolist().index(c) for c in (4, 1)]])


def test_feature_map_errors(tiny: Model) -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(BadLayer, match="not a map of the image"):
        feature_maps(tiny, x, "fc")
    with pytest.raises(BadArgument, match="sort="):
        feature_maps(tiny, x, "relu1", sort="median")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="top=0"):
        feature_maps(tiny, x, "relu1", top=0)
    with pytest.raises(BadArgument, match="channels \\[9\\]"):
        feature_maps(tiny, x, "relu1", channels=[0, 9])
    with pytest.raises(BadArgument, match="\\(B,C,H,W\\)"):
        feature_maps(tiny, x[0], "relu1")


def test_quantile_mask_keeps_half_a_percent(lite0: Model, cat: torch.Tensor) -> None:
    am = activation_mask(lite0, cat, "_blocks.10", 75, quantile=0.995)
    assert am.mask.shape == (1, 1, 224, 224) and am.mask.dtype == torch.bool
    assert am.raw.shape == (1, 1, 14, 14) and am.quantile == 0.995
    n = 224 * 224
    kept = int(am.mask.sum())
    assert kept == n - int(0.995 * n) == 251  # exactly the top ceil(0.5% of n): no ties here
    assert float(am.fraction[0]) == pytest.approx(0.005, abs=1e-4)
    # the threshold is the 99.5% quantile of the upsampled map (torch.quantile interpolates)
    assert float(am.threshold[0]) == pytest.approx(float(am.activation.quantile(0.995)), rel=1e-3)
    fm = feature_maps(lite0, cat, "_blocks.10", channels=[75])
    torch.testing.assert_close(am.raw, fm.maps)
    up = F.interpolate(fm.maps, size=(224, 224), mode="bilinear", align_corners=False)
    torch.testing.assert_close(am.activation, up)
    assert torch.equal(am.mask, am.activation >= am.threshold[0])


def test_threshold_semantics(lite0: Model, cat: torch.Tensor, tiny: Model) -> None:
    base = activation_mask(lite0, cat, "_blocks.10", 75, quantile=0.9)
    t = float(base.threshold[0])
    am = activation_mask(lite0, cat, "_blocks.10", 75, threshold=t)
    assert am.quantile is None and float(am.threshold[0]) == t
    assert torch.equal(am.mask, am.activation >= t) and torch.equal(am.mask, base.mask)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    up = activation_mask(tiny, x, "conv2", 0, threshold=0.0).activation
    high = activation_mask(tiny, x, "conv2", 0, threshold=float(up.max()) + 1e-3)
    low = activation_mask(tiny, x, "conv2", 0, threshold=float(up.min()))  # >=: the minimum counts
    assert not high.mask.any() and low.mask.all()


def test_per_image_and_per_batch_quantiles(tiny: Model) -> None:
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    x[0] *= 4  # one strong image dominates a batch-wide threshold
    per_image = activation_mask(tiny, x, "conv2", 3, quantile=0.75)
    per_batch = activation_mask(tiny, x, "conv2", 3, quantile=0.75, per="batch")
    torch.testing.assert_close(per_image.fraction, torch.full((4,), 0.25))
    assert per_batch.threshold.unique().numel() == 1
    assert float(per_batch.mask.float().mean()) == pytest.approx(0.25, abs=1e-3)
    assert per_batch.fraction[0] > 0.25 > per_batch.fraction[1:].max()


def test_dead_channel_gives_an_empty_quantile_mask(tiny: Model) -> None:
    with torch.no_grad():
        tiny.net.conv2.bias[2] = -1e4  # relu2 channel 2 is zero everywhere
    am = activation_mask(tiny, torch.rand(2, 3, 16, 16), "relu2", 2)
    assert am.quantile == 0.995 and not am.mask.any() and (am.threshold == 0).all()


def test_mask_errors(tiny: Model) -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(BadArgument, match=r"channel 8: layer 'conv2' has channels 0\.\.7"):
        activation_mask(tiny, x, "conv2", 8)
    with pytest.raises(BadArgument, match="channel -1"):
        activation_mask(tiny, x, "conv2", -1)
    with pytest.raises(BadArgument, match="not both"):
        activation_mask(tiny, x, "conv2", 0, quantile=0.9, threshold=1.0)
    with pytest.raises(BadArgument, match=r"quantile=1\.0"):
        activation_mask(tiny, x, "conv2", 0, quantile=1.0)
    with pytest.raises(BadArgument, match="per="):
        activation_mask(tiny, x, "conv2", 0, per="dataset")  # type: ignore[arg-type]
    with pytest.raises(BadLayer, match="did you mean"):
        activation_mask(tiny, x, "conv9", 0)


def test_model_untouched(tiny: Model) -> None:
    """Train mode, a frozen parameter and a user hook survive; nothing else is left behind."""
    tiny.train()
    tiny.net.conv1.bias.requires_grad_(False)
    seen: list[int] = []
    user = tiny.net.relu1.register_forward_hook(lambda m, i, o: seen.append(1))
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    flags = [(m.training, [p.requires_grad for p in m.parameters(False)]) for m in tiny.modules()]
    x = torch.rand(2, 3, 16, 16)
    feature_maps(tiny, x, "relu2", sort="max", top=3)
    activation_mask(tiny, x, "conv2", 1, quantile=0.9)
    activation_mask(tiny, x, "conv2", 1, threshold=0.0, per="batch")
    assert len(seen) == 3  # the user's hook ran once per forward and is still there
    user.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny.modules())
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [(m.training, [p.requires_grad for p in m.parameters(False)])
                     for m in tiny.modules()]
    assert all(p.grad is None for p in tiny.parameters())
