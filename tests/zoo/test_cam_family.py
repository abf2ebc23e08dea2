"""The CAM family against pytorch-grad-cam (PyPI grad-cam 1.5.7), the reference implementation.

Same network (torchvision ResNet-18 and MobileNetV2, seeded random weights, calibrated batch
norms), same inputs (the cat and the espresso), same target layer, same classes. pytorch-grad-cam
rectifies each layer's map, scales it to [0, 1] and upsamples it with cv2 to the input; our maps
come at the layer's resolution and ``explain`` upsamples them bilinearly (``values``), so the two
are compared at the input resolution by Pearson's r per image, which ignores the scaling:
it must reach 0.99 (it is 1 up to float rounding and cv2's interpolation where the definitions
are the same). aug_smooth and eigen_smooth are compared with theirs the same way (EigenCAM's
sign: ours follows the channel sum, theirs whatever LAPACK returns; the inputs here give the same
orientation, and tests/methods/attribution/test_cam_family.py checks ours against an SVD).

pytorch_grad_cam is imported unconditionally: this file belongs to the zoo venv, where it is
installed (pyproject's ``zoo`` extra); collecting it elsewhere fails instead of skipping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor

import convscope
from convscope.methods.registry import get_method
from convscope.model import Model, get_layer
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import Arch, build

TARGETS = [281, 967]  # tabby cat, espresso
REFERENCE: dict[str, Any] = {
    "gradcam": pgc.GradCAM, "gradcam_pp": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
    "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM, "ablationcam": pgc.AblationCAM, "fullgrad": pgc.FullGrad,
}
NETS = {
    "resnet18": (Arch("resnet18", 128, "layer4"), "layer4"),
    "mobilenet_v2": (Arch("mobilenet_v2", 128, "features"), "features"),
}
"""Each network at 128 x 128 (a 4 x 4 map at the last stage) and the layer both libraries read."""
SMALL = 32
ABLATED = {"layer4": "layer2", "features": "features.2.conv.0"}
"""AblationCAM runs one forward per channel and image: at 32 x 32, on ResNet-18's layer2 (128
channels, 4 x 4) and MobileNetV2's first expansion (96 channels, 16 x 16), it stays in seconds.
Both are rectified outputs (minimum 0), where pytorch-grad-cam's ablation is the paper's zero."""


PROJECTING = ("base_cam", "eigen_cam", "eigen_grad_cam", "fullgrad_cam", "hirescam", "layer_cam")
"""pytorch-grad-cam's modules that call ``get_2d_projection`` (their eigen smoothing and EigenCAMs)."""


@pytest.fixture(autouse=True)
def oriented_projection(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Their first-component projection, oriented as ours (module notes): a singular vector's
    sign is arbitrary, and LAPACK's choice flips theirs on some images. The projection itself is
    theirs: by the channel sum's direction, or where that is (nearly) zero, as on a LayerNorm's
    tokens, by its largest value (``first_component``'s rule)."""
    from pytorch_grad_cam.utils import svd_on_activations

    original = svd_on_activations.get_2d_projection
    flips: list[float] = []

    def oriented(batch: np.ndarray) -> np.ndarray:
        projections = original(batch)
        for i, acts in enumerate(np.nan_to_num(batch)):
            p = projections[i].astype(np.float64).ravel()
            m = acts.reshape(acts.shape[0], -1).T.astype(np.float64)
            v = (m - m.mean(0)).T @ p  # M^T M v = s^2 v: their singular vector, up to scale
            peak = float(p[np.abs(p).argmax()])
            sign = 1.0 if (v.sum() if abs(v.sum()) > 1e-3 * np.abs(v).sum() else peak) >= 0 else -1.0
            projections[i] *= sign
            flips.append(sign)
        return projections

    for module in PROJECTING:
        monkeypatch.setattr(f"pytorch_grad_cam.{module}.get_2d_projection", oriented)
    return flips


@pytest.fixture(scope="module", params=list(NETS))
def net(request: pytest.FixtureRequest) -> tuple[Model, str]:
    arch, layer = NETS[request.param]
    return build(arch), layer


def _photos(model: Model, side: int | None = None) -> Tensor:
    x = model.preprocess([convscope.load_image("sample:cat"), convscope.load_image("sample:coffee")])
    return x if side is None else torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear")


def pearson(ours: Tensor, theirs: np.ndarray) -> list[float]:
    a = ours.detach().double().flatten(1).numpy()
    b = theirs.reshape(len(theirs), -1).astype(np.float64)
    return [float(np.corrcoef(u, v)[0, 1]) for u, v in zip(a, b)]


def _run_theirs(cam: Any, x: Tensor, model: Model, **smooth: bool) -> np.ndarray:
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS], **smooth)
    finally:  # pytorch-grad-cam calls backward(): the parameters' .grad must not reach our checks
        cam.activations_and_grads.release()
        model.net.zero_grad(set_to_none=True)


def _theirs(name: str, model: Model, layer: str, x: Tensor, **smooth: bool) -> np.ndarray:
    cam = REFERENCE[name](model=model.net, target_layers=[get_layer(model.net, layer)])
    return _run_theirs(cam, x, model, **smooth)


def _ours(name: str, model: Model, layer: str, x: Tensor, **options: Any) -> Tensor:
    before = snapshot(model)
    where = {"layer": layer} if get_method(name).needs_layer else {}
    result = convscope.explain(model, x, method=name, target=TARGETS, **where, **options)
    assert_unharmed(model, before)
    return result.values[:, 0]


def agree(name: str, ours: Tensor, theirs: np.ndarray, r: float = 0.99) -> None:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    found = pearson(ours, theirs)
    assert min(found) >= r, f"{name}: Pearson r per image {found}"


@pytest.mark.parametrize("name", ["hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam",
                                  "fullgrad", "gradcam"])
def test_gradient_cams_agree_with_pytorch_grad_cam(net: tuple[Model, str], name: str) -> None:
    model, layer = net
    x = _photos(model)
    agree(name, _ours(name, model, layer, x), _theirs(name, model, layer, x))


@pytest.mark.parametrize("arch_name", list(NETS))
def test_gradcam_pp_agrees_with_pytorch_grad_cam_where_their_eps_is_negligible(arch_name: str) -> None:
    """Their alpha is ``g^2 / (2 g^2 + sum(A) g^3 + 1e-6)``; the paper's (Eq. 19) and ours has no
    1e-6, which at random init (gradients about 1e-3) shrinks the weight of weak channels: r is
    0.987-0.997 there. The same networks with the head's logits scaled by 1000 (a model like any
    other, its gradients 1000x) make the 1e-6 negligible, and the maps are equal up to rounding."""
    arch, layer = NETS[arch_name]
    model = build(arch)  # a fresh copy: its head is changed
    head = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(1000)
        head.bias.mul_(1000)
    x = _photos(model)
    agree("gradcam_pp", _ours("gradcam_pp", model, layer, x), _theirs("gradcam_pp", model, layer, x),
          r=0.9999)


@pytest.mark.parametrize("name", ["gradcam", "hirescam", "layercam", "xgradcam", "fullgrad"])
@pytest.mark.parametrize("smooth", ["aug_smooth", "eigen_smooth"])
def test_smoothing_agrees_with_pytorch_grad_cam(net: tuple[Model, str], name: str, smooth: str) -> None:
    model, layer = net
    x = _photos(model)
    agree(f"{name} {smooth}", _ours(name, model, layer, x, **{smooth: True}),
          _theirs(name, model, layer, x, **{smooth: True}))


def test_ablationcam_agrees_with_pytorch_grad_cam(net: tuple[Model, str]) -> None:
    model, layer = net
    layer = ABLATED[layer]
    x = _photos(model, SMALL)
    agree("ablationcam", _ours("ablationcam", model, layer, x), _theirs("ablationcam", model, layer, x))


def test_layercam_fusion_agrees_with_pytorch_grad_cams_layer_list() -> None:
    """Several target layers in pytorch-grad-cam: each map scaled to [0, 1], upsampled, averaged
    and scaled again; ours fuses at the finest layer's grid (one bilinear step more)."""
    model = build(NETS["resnet18"][0])
    x = _photos(model)
    cam = pgc.LayerCAM(model=model.net, target_layers=[model.net.layer4, model.net.layer3, model.net.layer2])
    theirs = _run_theirs(cam, x, model)
    agree("layercam fused", _ours("layercam", model, "layer4", x, fuse="layer3,layer2"), theirs)


def _vit_tokens(tensor: Tensor) -> Tensor:
    """pytorch-grad-cam's reshape_transform for a ViT: patch tokens (class token dropped) as a map."""
    side = int((tensor.shape[1] - 1) ** 0.5)
    return tensor[:, 1:].reshape(tensor.shape[0], side, side, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", ["hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam",
                                  "fullgrad"])
def test_on_a_vision_transformer(name: str) -> None:
    """timm's ViT-Tiny (64 x 64, a 4 x 4 patch grid): our token reader against their reshape."""
    from tests.zoo.timm_archs import TIMM
    from tests.zoo.timm_archs import build as build_timm

    arch = TIMM["vit"]
    model = build_timm(arch)
    x = _photos(model)
    ours = _ours(name, model, arch.layer, x)  # before theirs registers its hooks
    reshape = None if name == "fullgrad" else _vit_tokens  # FullGrad reads conv outputs only
    cam = REFERENCE[name](model=model.net, target_layers=[get_layer(model.net, arch.layer)],
                          reshape_transform=reshape)
    agree(f"{name} on {arch.name}", ours, _run_theirs(cam, x, model))


def test_ablationcam_on_a_vision_transformer() -> None:
    """Zeroing a token channel (the paper's ablation; pytorch-grad-cam's ViT layer puts min - 1e7
    there instead, so theirs is no reference): a finite, non-empty map on the patch grid."""
    from tests.zoo.timm_archs import TIMM
    from tests.zoo.timm_archs import build as build_timm

    arch = TIMM["vit"]
    model = build_timm(arch)
    x = _photos(model)
    before = snapshot(model)
    result = convscope.explain(model, x, method="ablationcam", layer=arch.layer, target=TARGETS,
                               max_channels=16)
    assert_unharmed(model, before)
    assert result.raw.shape == (2, 1, 4, 4) and torch.isfinite(result.raw).all()
    assert (result.raw.flatten(1).amax(1) > 0).all()
