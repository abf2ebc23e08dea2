"""Grad-CAM and the gradient methods on torchvision's vision transformers (issue 13, item 4).

Random weights only (nothing is downloaded). A small ``VisionTransformer`` (32x32 images, 8x8
patches, 2 layers) runs the checks fast; ``vit_b_16`` and ``swin_t`` themselves run once with one
image and a redrawn 4-class head (torchvision initializes ViT heads to zero, which would leave
every gradient zero). Grad-CAM must give a non-empty map at the patch-grid resolution
through the token-to-grid reshape, detected for their layers, and agree with Grad-CAM computed by
hand from the tokens; CAM must refuse them in one line.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import swin_t, vit_b_16
from torchvision.models.vision_transformer import VisionTransformer

from convscope.errors import BadLayer, BadModel
from convscope.methods.attribution import CAM, GradCAM, GradientXInput, IntegratedGradients, Saliency
from convscope.model import Model, Preprocess, capture


def _small_vit() -> Model:
    torch.manual_seed(0)
    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                            mlp_dim=32, num_classes=5)
    nn.init.normal_(net.heads.head.weight)  # torchvision starts the head at zero: no gradient at all
    return Model(net.eval(), preprocess=Preprocess(input_size=(32, 32)), name="small-vit")


def _image(size: int, batch: int = 2) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_auto_layer_is_the_last_blocks_first_norm() -> None:
    assert GradCAM(_small_vit()).layer == "encoder.layers.encoder_layer_1.ln_1"


def test_gradcam_on_vit_tokens_equals_the_hand_computed_map() -> None:
    model, x = _small_vit(), _image(32)
    cam = GradCAM(model)(x, 3)
    assert cam.shape == (2, 1, 4, 4)  # 32 / 8 patches per side
    assert (cam > 0).any()
    layer = "encoder.layers.encoder_layer_1.ln_1"
    with torch.enable_grad(), capture(model, layer, grads=True) as record:
        logits = model(x)
    tokens = record[layer]  # (B, 1 + 16, D): class token first
    (grads,) = torch.autograd.grad(logits[:, 3].sum(), tokens)
    patches, g = tokens[:, 1:].detach(), grads[:, 1:]
    weights = g.mean(1, keepdim=True)  # mean over the 16 positions, per channel
    want = (weights * patches).sum(2).relu().view(2, 1, 4, 4)
    assert torch.allclose(cam, want, atol=1e-6)


def test_explicit_reshape_as_grid_or_callable() -> None:
    model, x = _small_vit(), _image(32)
    auto = GradCAM(model)(x, 1)
    by_grid = GradCAM(model, reshape=(4, 4))(x, 1)
    by_callable = GradCAM(model, reshape=lambda t: t[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2))(x, 1)
    assert torch.allclose(auto, by_grid) and torch.allclose(auto, by_callable)
    with pytest.raises(BadLayer, match="reshape=\\(3, 3\\) does not fit"):
        GradCAM(model, reshape=(3, 3))(x, 1)
    with pytest.raises(BadLayer, match="not a map of the image"):
        GradCAM(model, layer="heads")(x, 1)


def test_gradient_methods_on_a_vit() -> None:
    model, x = _small_vit(), _image(32)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xr)[:, 2].sum(), xr)
    assert torch.allclose(GradientXInput(model)(x, 2), grad * x, atol=1e-6)
    assert torch.allclose(Saliency(model)(x, 2), grad.abs().amax(1, keepdim=True), atol=1e-6)
    ig = IntegratedGradients(model, steps=32, rule="gausslegendre")
    attr = ig(x, 2)
    gap = ig.completeness_gap(x, attr, 2)
    assert (gap.abs() / ig.score_change(x, 2).abs().clamp_min(1e-3)).max() < 0.05


def test_cam_refuses_a_vit_in_one_line() -> None:
    with pytest.raises(BadModel, match="gradcam") as err:
        CAM(_small_vit())(_image(32), 0)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("factory, layer, grid", [
    (vit_b_16, "encoder.layers.encoder_layer_11.ln_1", (14, 14)),
    (swin_t, "features.7.1.norm1", (7, 7)),
], ids=["vit_b_16", "swin_t"])
def test_gradcam_on_torchvision_transformers(factory, layer: str, grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = factory()
    if hasattr(net, "heads"):
        net.heads.head = nn.Linear(net.heads.head.in_features, 4)
    else:
        net.head = nn.Linear(net.head.in_features, 4)
    model = Model(net.eval(), name=factory.__name__)
    x = _image(224, batch=1)
    gradcam = GradCAM(model)
    assert gradcam.layer == layer
    cam = gradcam(x, 1)
    assert cam.shape == (1, 1, *grid) and torch.isfinite(cam).all() and (cam > 0).any()
    sal = Saliency(model)(x, 1)
    assert sal.shape == (1, 1, 224, 224) and (sal > 0).any()
    if factory is swin_t:  # norm -> permute -> average pool -> head: CAM applies, read channels-last
        feats: list[Tensor] = []
        handle = net.norm.register_forward_hook(lambda _m, _i, out: feats.append(out))
        with torch.no_grad():
            net(x)
        handle.remove()
        want = torch.einsum("bhwc,c->bhw", feats[0], net.head.weight[1]).unsqueeze(1).relu()
        torch.testing.assert_close(CAM(model)(x, 1), want, rtol=1e-4, atol=1e-5)
    else:  # the class token feeds the head: no pooled map for CAM
        with pytest.raises(BadModel):
            CAM(model)(x, 1)
    if factory is swin_t:  # Swin's patch embedding is a convolution: (B, C, H, W), not permuted
        assert GradCAM(model, layer="features.0.0")(x, 1).shape == (1, 1, 56, 56)
