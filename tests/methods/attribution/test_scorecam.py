"""Score-CAM: equal to a plain per-channel reading of the paper, skipped channels, chunking, errors.

Its localization on the two-object image is tested with occlusion and RISE in test_perturbation.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.errors import BadArgument, BadLayer
from convscope.methods.attribution.scorecam import ScoreCAM
from convscope.methods.registry import build_method, get_method
from convscope.model import Model, Preprocess, forward_until


def _inputs(batch: int = 3, size: int = 16) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def reference_scorecam(model: Model, x: Tensor, target: int, layer: str) -> Tensor:
    """Score-CAM for one image, one channel at a time on the model itself (Wang et al. 2020, Alg. 1)."""
    acts = forward_until(model, x, layer)[layer][0]  # (K, h, w)
    scores, used = [], []
    with torch.no_grad():
        for k, a in enumerate(acts):
            if a.max() == a.min():
                continue
            up = F.interpolate(a[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
            mask = (up - up.min()) / (up.max() - up.min())
            scores.append(model(model.normalize(model.denormalize(x) * mask))[0, target])
            used.append(k)
    weights = torch.stack(scores).softmax(0)
    return (weights[:, None, None] * acts[used]).sum(0).relu()[None, None]


def test_registered() -> None:
    info = get_method("scorecam")
    assert info.family == "cam" and info.needs_layer and not info.signed


@pytest.mark.parametrize("layer", ["relu1", "relu2"])
def test_equals_the_paper_channel_by_channel(tiny: Model, layer: str) -> None:
    x = _inputs()
    ours = ScoreCAM(tiny, layer=layer, batch_size=5)(x, [0, 3, 1])
    ref = torch.cat([reference_scorecam(tiny, x[i:i + 1], t, layer) for i, t in enumerate([0, 3, 1])])
    assert ours.shape == ref.shape == (3, 1, *forward_until(tiny, x, layer)[layer].shape[-2:])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    assert ours.amax((1, 2, 3)).min() > 0


def test_chunking_and_max_channels(tiny: Model) -> None:
    x = _inputs()
    maps = [ScoreCAM(tiny, layer="relu2", batch_size=b)(x, 2) for b in (1, 4, 1000)]
    for m in maps[1:]:
        torch.testing.assert_close(m, maps[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ScoreCAM(tiny, layer="relu2", max_channels=8)(x, 2), maps[0])


class OneLiveChannel(nn.Module):
    """Three channels, of which two are constant: Score-CAM must return the live one alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.features = nn.Identity()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        live = self.conv(x).relu()
        feats = self.features(torch.cat([live, torch.zeros_like(live), torch.ones_like(live)], 1))
        return self.fc(feats.mean((2, 3)))


def test_constant_channels_are_skipped() -> None:
    torch.manual_seed(0)
    model = Model(OneLiveChannel().eval(), preprocess=Preprocess(input_size=(8, 8)))
    x = _inputs(2, 8)
    out = ScoreCAM(model, layer="features")(x, 1)
    live = model.net.conv(x).relu()
    torch.testing.assert_close(out, live.detach())  # one scored channel: softmax weight 1


def test_max_channels_keeps_the_most_varied(tiny: Model) -> None:
    x = _inputs(1)
    acts = forward_until(tiny, x, "relu2")["relu2"]
    best = int(acts.flatten(2).var(2).argmax())
    torch.testing.assert_close(ScoreCAM(tiny, layer="relu2", max_channels=1)(x, 0), acts[:, best:best + 1])


def test_errors(tiny: Model) -> None:
    with pytest.raises(BadLayer, match="not a map of the image"):
        ScoreCAM(tiny, layer="fc")(_inputs(), 0)
    for options in ({"batch_size": 0}, {"max_channels": 0}, {"max_channels": 1.5}):
        with pytest.raises(BadArgument):
            build_method("scorecam", tiny, "relu2", **options)
