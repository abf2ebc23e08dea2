"""One reader of a layer on timm's architectures (tests/zoo/timm_archs.py, random weights).

On each architecture: ``explain()`` and every inside view choose the same sensible "auto" layer
(the table in timm_archs.py) for the same reason; Grad-CAM and Score-CAM on it equal references
computed here by hand from the captured output (tokens, channels-last maps and conv maps read
by hand); maps are finite, non-empty, one per image, on a square grid for the square input; and the
readers used leave the model unharmed (tests/model_safety.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import convscope
from convscope.methods.attribution import ScoreCAM
from convscope.methods.dataset import scan
from convscope.methods.features import activation_mask, feature_maps
from convscope.model import Model, capture
from convscope.model.layers import choose_layer
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import finite_nonzero
from tests.zoo.timm_archs import TimmArch

SCORECAM_CHANNELS = 4


def by_hand(model: Model, arch: TimmArch, out: Tensor) -> Tensor:
    """The chosen layer's output (or its gradient) as (B, C, h, w), written out per layout."""
    if arch.reads == "channels-last":
        return out.permute(0, 3, 1, 2)
    if arch.reads == "tokens":
        patches = out[:, int(getattr(model.net, "num_prefix_tokens", 0)):]
        side = int(patches.shape[1] ** 0.5)
        return patches.reshape(out.shape[0], side, side, -1).permute(0, 3, 1, 2)
    return out


def captured(model: Model, arch: TimmArch, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(activations, d top-1 logit / d activations, top-1 classes) of the chosen layer, by hand."""
    with torch.enable_grad(), capture(model, arch.layer, grads=True) as record:
        logits = model(x)
    out = record[arch.layer]
    top = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), out)
    return by_hand(model, arch, out.detach()), by_hand(model, arch, grad), top


def unharmed_explain(model: Model, x: Tensor, method: str, **options: object) -> convscope.Explanation:
    before = snapshot(model)
    try:
        return convscope.explain(model, x, method=method, **options)
    finally:
        assert_unharmed(model, before)


def square_maps(raw: Tensor, what: str) -> None:
    """One (1, h, h) map per image of the two, h > 1, finite, not zero everywhere (a rectified
    map of one image may be: random weights leave some classes no positive evidence there)."""
    assert raw.ndim == 4 and raw.shape[:2] == (2, 1), f"{what}: {tuple(raw.shape)}"
    assert raw.shape[2] == raw.shape[3] > 1, f"{what}: not a square grid {tuple(raw.shape)}"
    assert torch.isfinite(raw).all() and (raw != 0).any(), f"{what}: not finite, or zero everywhere"


def test_auto_layer_is_the_same_for_every_reader(timm_model: Model, timm_arch: TimmArch,
                                                 timm_inputs: Tensor) -> None:
    choice = choose_layer(timm_model)
    assert choice.name == timm_arch.layer, timm_arch.why
    result = unharmed_explain(timm_model, timm_inputs, "gradcam")
    assert (result.layer, result.layer_reason) == (choice.name, choice.reason)
    assert ScoreCAM(timm_model).layer == choice.name
    maps = feature_maps(timm_model, timm_inputs, "auto", sort="max", top=2)
    assert maps.layer == choice.name
    assert activation_mask(timm_model, timm_inputs, "auto", int(maps.channels[0])).layer == choice.name
    assert scan(timm_model, timm_inputs, "auto", k=1).layers == [choice.name]
    with torch.no_grad(), capture(timm_model, "auto") as record:
        timm_model(timm_inputs)
        assert record.names == [choice.name]
        acts = record.map(choice.name)
    assert maps.maps.shape == (2, 2, *acts.shape[-2:])
    torch.testing.assert_close(maps.maps, acts[:, maps.channels], rtol=0, atol=0)
    finite_nonzero(maps.maps, f"feature maps of {timm_arch.name}'s auto layer")


def test_gradcam_equals_the_hand_computed_map(timm_model: Model, timm_arch: TimmArch,
                                              timm_inputs: Tensor) -> None:
    acts, grads, top = captured(timm_model, timm_arch, timm_inputs)
    want = (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True).relu()
    result = unharmed_explain(timm_model, timm_inputs, "gradcam", target=top)
    assert isinstance(result.raw, Tensor) and result.layer == timm_arch.layer
    square_maps(result.raw, f"gradcam on {timm_arch.name}")
    scale = float(want.abs().max())
    torch.testing.assert_close(result.raw, want, rtol=1e-4, atol=1e-5 * scale)
    assert result.values.shape == (2, 1, *timm_inputs.shape[-2:])


def test_scorecam_equals_the_hand_computed_map(timm_model: Model, timm_arch: TimmArch,
                                               timm_inputs: Tensor) -> None:
    acts, _, top = captured(timm_model, timm_arch, timm_inputs)
    x, k = timm_inputs, SCORECAM_CHANNELS
    flat = acts.flatten(2)
    spread = flat.var(2).masked_fill(~(flat.amax(2) > flat.amin(2)), -float("inf"))
    chosen = spread.topk(k, dim=1).indices  # (B, k): the most varied channels of each image
    evidence = torch.full(acts.shape[:2], -float("inf"))
    pixels = timm_model.denormalize(x)
    for b in range(x.shape[0]):
        up = F.interpolate(acts[b, chosen[b]][None], size=x.shape[-2:], mode="bilinear",
                           align_corners=False)[0]  # (k, H, W)
        low, high = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
        masks = (up - low) / (high - low).clamp_min(1e-12)
        with torch.no_grad():
            logits = timm_model(timm_model.normalize(pixels[b] * masks[:, None]))
        evidence[b, chosen[b]] = logits[:, top[b]]
    weights = evidence.softmax(1)
    want = (weights[:, :, None, None] * acts).sum(1, keepdim=True).relu()
    result = unharmed_explain(timm_model, x, "scorecam", target=top, max_channels=k)
    assert isinstance(result.raw, Tensor) and result.layer == timm_arch.layer
    square_maps(result.raw, f"scorecam on {timm_arch.name}")
    # the method scores its masked copies through the fast path (batch norms folded)
    scale = float(want.abs().max())
    torch.testing.assert_close(result.raw, want, rtol=1e-3, atol=1e-4 * scale)
