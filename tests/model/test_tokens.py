"""One reader of a layer (model/tokens.py) on hand-built token models laid out as timm lays them out.

Every reader of a layer (Grad-CAM, Score-CAM, feature maps, masks, ``capture``'s map, the scan,
embeddings, the layer table) must read the same (B, C, h, w) map of the image batch that a
hand-written reshape gives: class tokens dropped (ViT), channels-last permuted (Swin), unfolded
patches folded back (MobileViT), and choose the same "auto" layer for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import convscope
from convscope.errors import BadLayer
from convscope.methods.attribution import GradCAM, ScoreCAM
from convscope.methods.dataset import embed, scan
from convscope.methods.features import activation_mask, feature_maps
from convscope.model import Model, capture, list_layers
from convscope.model.layers import choose_layer
from convscope.model.tokens import layout_of, normalizes_last_dim
from tests.model.token_nets import DIM, TokenNorm, images, token_model

B = 2


def _tokens(model: Model, out: Tensor) -> Tensor:  # class token first, 4x4 patches row-major
    return out[:, 1:].reshape(out.shape[0], 4, 4, -1).permute(0, 3, 1, 2)


def _last(model: Model, out: Tensor) -> Tensor:
    return out.permute(0, 3, 1, 2)


def _fold(model: Model, out: Tensor) -> Tensor:  # the model's own fold, as its forward uses it
    return model.net.block.fold(out, out.shape[0] // 4, 4, 4)


def _plain(model: Model, out: Tensor) -> Tensor:
    return out


# (model kind, layer, the hand-written reading of its output)
LAYERS: list[tuple[str, str, Callable[[Model, Tensor], Tensor]]] = [
    ("vit", "blocks.1.norm1", _tokens),
    ("vit", "blocks.0", _tokens),
    ("swin", "stage.1.norm1", _last),
    ("swin", "stage", _last),
    ("mobilevit", "block.norm", _fold),
    ("mobilevit", "block.transformer.0.norm1", _fold),
    ("mobilevit", "final_conv", _plain),
]
AUTO = {"vit": "blocks.1.norm1", "swin": "stage.1.norm1", "mobilevit": "final_conv"}
IDS = [f"{kind}-{layer}" for kind, layer, _ in LAYERS]


def _raw(model: Model, x: Tensor, layer: str, target: int | None = None) -> tuple[Tensor, Tensor | None]:
    """The layer's output as the model computes it (and d logit / d output for a target)."""
    with torch.enable_grad(), capture(model, layer, grads=target is not None) as record:
        logits = model(x)
    out = record[layer]
    if target is None:
        return out.detach(), None
    (grad,) = torch.autograd.grad(logits[:, target].sum(), out)
    return out.detach(), grad


def test_a_layernorm_subclass_is_a_norm_by_behaviour() -> None:
    assert normalizes_last_dim(TokenNorm(DIM), (1, 17, DIM))
    assert normalizes_last_dim(torch.nn.LayerNorm(DIM), (1, 4, 4, DIM))
    assert not normalizes_last_dim(torch.nn.Linear(DIM, DIM), (1, 17, DIM))
    assert not normalizes_last_dim(torch.nn.BatchNorm1d(17), (1, 17, DIM))  # running statistics
    assert not normalizes_last_dim(torch.nn.Identity(), (1, 17, DIM))


@pytest.mark.parametrize("kind", list(AUTO))
def test_one_auto_for_every_reader(kind: str) -> None:
    """explain(), Score-CAM, feature maps, masks, capture, the scan and embed pick one layer."""
    model, x = token_model(kind), images(B)
    choice = choose_layer(model)
    assert choice.name == AUTO[kind]
    result = convscope.explain(model, x, method="gradcam", target=1)
    assert (result.layer, result.layer_reason) == (choice.name, choice.reason)
    assert ScoreCAM(model).layer == choice.name
    assert feature_maps(model, x, "auto").layer == choice.name
    assert activation_mask(model, x, "auto", 0).layer == choice.name
    assert scan(model, x, "auto", k=1).layers == [choice.name]
    with capture(model, "auto") as record:
        model(x)
    assert record.names == [choice.name]
    torch.testing.assert_close(embed(model, x, "auto"), embed(model, x, choice.name))
    if kind == "vit":
        assert "transformer" in choice.reason


@pytest.mark.parametrize(("kind", "layer", "hand"), LAYERS, ids=IDS)
def test_every_reader_reads_the_hand_written_map(kind: str, layer: str,
                                                 hand: Callable[[Model, Tensor], Tensor]) -> None:
    """One map per image, on the 4x4 grid, the same in every reader as the hand-written one."""
    model, x = token_model(kind), images(B)
    out, _ = _raw(model, x, layer)
    want = hand(model, out)
    assert want.shape[0] == B and want.shape[-2:] == (4, 4)
    maps = feature_maps(model, x, layer)
    torch.testing.assert_close(maps.maps, want)
    assert maps.maps.shape[1] == maps.total_channels == want.shape[1]
    mask = activation_mask(model, x, layer, 1)
    torch.testing.assert_close(mask.raw, want[:, 1:2])
    with torch.no_grad(), capture(model, layer) as record:
        model(x)
        torch.testing.assert_close(record.map(layer), want)
    torch.testing.assert_close(embed(model, x, layer), want.mean((2, 3)))
    scanned = scan(model, x, layer, k=1)
    torch.testing.assert_close(scanned.embeddings[layer], want.mean((2, 3)), rtol=1e-5, atol=1e-6)
    best = want.flatten(2).amax(2).amax(0)  # each channel's top activation over the two images
    torch.testing.assert_close(scanned.topk[layer].values[:, 0], best, rtol=1e-5, atol=1e-6)
    row = next(r for r in list_layers(model) if r.name == layer)
    assert row.map_shape == tuple(want.shape[1:])
    signal = GradCAM(model, layer=layer).layer_signal(x, 0)  # what explain() reads
    torch.testing.assert_close(signal.acts, want)


@pytest.mark.parametrize(("kind", "layer", "hand"), LAYERS, ids=IDS)
def test_gradcam_equals_the_hand_computed_map(kind: str, layer: str,
                                              hand: Callable[[Model, Tensor], Tensor]) -> None:
    model, x = token_model(kind), images(B)
    out, grad = _raw(model, x, layer, target=3)
    assert grad is not None
    acts, grads = hand(model, out), hand(model, grad)
    want = (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True).relu()
    cam = GradCAM(model, layer=layer)(x, 3)
    assert cam.shape == (B, 1, 4, 4)  # one map per image (MobileViT's unfolded patches folded back)
    torch.testing.assert_close(cam, want, rtol=1e-5, atol=1e-6)
    assert (cam > 0).any() or (want == 0).all()


def test_scorecam_reads_a_channels_last_map_as_channels() -> None:
    """Score-CAM on Swin's (B, h, w, C) norm: C channel masks, each upsampled from its 4x4 map."""
    model, x = token_model("swin"), images(B)
    layer = AUTO["swin"]
    acts = _raw(model, x, layer)[0].permute(0, 3, 1, 2)
    up = torch.nn.functional.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=False)
    low, high = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = (up - low) / (high - low).clamp_min(1e-12)  # (B, C, H, W)
    pixels = model.denormalize(x)
    with torch.no_grad():
        scores = torch.stack([model(model.normalize(pixels * masks[:, k:k + 1]))[:, 2]
                              for k in range(acts.shape[1])], 1)
    want = (scores.softmax(1)[:, :, None, None] * acts).sum(1, keepdim=True).relu()
    cam = ScoreCAM(model)(x, 2)
    assert cam.shape == (B, 1, 4, 4)
    torch.testing.assert_close(cam, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("kind", "layer", "why"), [
    ("vit", "blocks.1.attn.k_norm", "is a grid of the 16x16 image"),  # (B, heads, N, d) keys
    ("vit", "head", "no spatial axes"),
])
def test_what_is_not_a_map_is_refused_in_one_line(kind: str, layer: str, why: str) -> None:
    model, x = token_model(kind), images(B)
    readers = [lambda: feature_maps(model, x, layer), lambda: GradCAM(model, layer=layer)(x, 0),
               lambda: ScoreCAM(model, layer=layer)(x, 0)]
    if layer != "head":  # the scan keeps a (B, C) output as its own embedding
        readers.append(lambda: scan(model, x, layer))
    for read in readers:
        with pytest.raises(BadLayer, match=why) as err:
            read()
        assert "\n" not in str(err.value) and layer in str(err.value)


def test_a_batch_folded_without_a_declared_patch_is_refused() -> None:
    """Patches (or windows) folded into the batch in an order nobody declared: not guessed."""
    model, x = token_model("mobilevit", declare=False), images(B)
    with pytest.raises(BadLayer, match="first dimension 8 is not the image batch 2"):
        GradCAM(model, layer="block.norm")(x, 0)
    with pytest.raises(BadLayer, match="not the image batch"):
        feature_maps(model, x, "block.norm")


def test_layouts_when_both_readings_fit() -> None:
    """(B, 4, 4, 4): a Linear or a last-dimension norm is channels-last, anything else a map."""
    shape, image = (1, 4, 4, 4), (16, 16)
    assert layout_of(shape, "n", image=image, batch=1, module=torch.nn.LayerNorm(4)).kind == "channels-last"
    assert layout_of(shape, "l", image=image, batch=1, module=torch.nn.Linear(4, 4)).kind == "channels-last"
    assert layout_of(shape, "c", image=image, batch=1, module=torch.nn.Conv2d(4, 4, 1)).kind == "map"
    assert layout_of(shape, "x", image=image, batch=1).kind == "map"
    assert layout_of((1, 16, 5, 5), "c", image=(20, 20), batch=1).kind == "map"
    assert layout_of((1, 5, 5, 16), "c", image=(20, 20), batch=1).kind == "channels-last"
    tokens = layout_of((1, 1 + 12, 8), "t", image=(24, 32), batch=1)  # a class token, 3x4 patches
    assert (tokens.kind, tokens.prefix, tokens.grid) == ("tokens", 1, (3, 4))
