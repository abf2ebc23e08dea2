"""torchvision's video models (r3d_18, mc3_18, r2plus1d_18, s3d) with random weights, on clips.

The clips pan across the sample photos (a crop sliding right, frame by frame), and the models'
batch norms are calibrated on other photos' pans as tests/zoo/conftest.py calibrates the image
models. R(2+1)D, R3D and MC3 run 8 frames of 64 x 64; S3D needs 13 frames of 224 x 224 at least
(its head averages a 2 x 7 x 7 map; torchvision's metadata says 14 frames), so it runs once.
Each model: the "auto" layer, the model-safety contract, finite maps that are non-empty on every
frame, IG's completeness or its warning, and Grad-CAM against pytorch-grad-cam 1.5.7, which
supports 3-D inputs (it weighs by gradients averaged over (t, h, w) as we do, then upsamples with
``scipy.ndimage.zoom``, a cubic spline, where we upsample trilinearly: the maps are compared at
the layer's resolution upsampled by that same zoom, and at the input as each library gives it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy.ndimage import zoom
from torch import Tensor, nn
from torchvision.models import get_model

import convscope
from convscope.model import Model, Preprocess, get_layer
from convscope.model.zoo import KINETICS_MEAN, KINETICS_STD, torchvision_video_preprocess
from tests.model_safety import assert_unharmed, snapshot


@dataclass(frozen=True)
class VideoArch:
    name: str
    frames: int
    side: int
    layer: str
    """What "auto" should pick: the last stage before the pooling head."""


ARCHS = {a.name: a for a in [
    VideoArch("r3d_18", 8, 48, "layer4"),
    VideoArch("mc3_18", 8, 48, "layer4"),
    VideoArch("r2plus1d_18", 8, 48, "layer4"),
    VideoArch("s3d", 13, 224, "features"),
]}
CALIBRATION = ("astronaut",)


def pan_clip(sample: str, frames: int, side: int) -> Tensor:
    """(T, 3, side, side): a square crop of the photo sliding from its left edge to its right."""
    image = convscope.load_image(f"sample:{sample}")
    height, width = image.shape[-2:]
    crop = min(height, width) * 3 // 4
    lefts = torch.linspace(0, width - crop, frames).round().long()
    top = (height - crop) // 2
    return torch.stack([nn.functional.interpolate(image[None, :, top:top + crop, left:left + crop],
                                                  size=(side, side), mode="bilinear", antialias=True)[0]
                        for left in lefts.tolist()])


def build(arch: VideoArch) -> Model:
    torch.manual_seed(0)
    net = get_model(arch.name, weights=None)
    own = torchvision_video_preprocess(torchvision, arch.name)
    model = Model(net, preprocess=Preprocess(**(own | {"input_size": (arch.side, arch.side),
                                                       "frames": arch.frames})), name=arch.name)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    net.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        net(model.preprocess_clips([pan_clip(s, arch.frames, arch.side) for s in CALIBRATION]))
    return model.eval()


@cache
def built(name: str) -> tuple[VideoArch, Model, Tensor]:
    """Each architecture built once for the module, with its test clip (the cat panned)."""
    arch = ARCHS[name]
    model = build(arch)
    return arch, model, model.preprocess_clips(pan_clip("cat", arch.frames, arch.side))


@pytest.fixture(params=list(ARCHS))
def video(request: pytest.FixtureRequest) -> tuple[VideoArch, Model, Tensor]:
    return built(request.param)


@pytest.fixture(params=[name for name in ARCHS if ARCHS[name].side < 224])
def small_video(request: pytest.FixtureRequest) -> tuple[VideoArch, Model, Tensor]:
    """The architectures that run at 64 x 64 (S3D's 13 x 224 x 224 clip makes IG's steps slow)."""
    return built(request.param)


def test_preprocessing_comes_from_torchvision_weights_metadata() -> None:
    assert torchvision_video_preprocess(torchvision, "r3d_18") == {
        "input_size": (112, 112), "mean": KINETICS_MEAN, "std": KINETICS_STD, "frames": 1}
    assert torchvision_video_preprocess(torchvision, "s3d")["frames"] == 14


def test_load_model_reads_a_torchvision_video_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "mc3.pt"
    torch.save(get_model("mc3_18", weights=None).state_dict(), path)
    model = convscope.load_model("torchvision:mc3_18", weights=path)
    assert model.frames == 1 and model.input_size == (112, 112) and model.spec.mean == KINETICS_MEAN
    assert "Kinetics-400" in (model.preprocess_source or "")
    assert model.labels is not None and len(model.labels) == 400 and "abseiling" in model.labels


def test_gradcam_auto_layer_safety_maps_and_pytorch_grad_cam(video: tuple[VideoArch, Model, Tensor]) -> None:
    """One Grad-CAM per model (S3D's clip is costly): "auto", the contract, a map on every frame,
    and pytorch-grad-cam's map (not on S3D: the three others show the agreement)."""
    arch, model, clip = video
    before = snapshot(model)
    result = convscope.explain(model, clip, "gradcam", target=3)
    assert_unharmed(model, before)
    assert result.layer == arch.layer and "last spatial feature map" in (result.layer_reason or "")
    maps = result.values[0, 0]
    assert maps.shape == (arch.frames, arch.side, arch.side) and bool(torch.isfinite(maps).all())
    assert bool((maps.flatten(1).amax(1) > 0).all())  # every frame gets some of the map
    if arch.side < 224:
        assert agreement(model, arch.layer, clip, result.raw[0, 0]) >= 0.99


def agreement(model: Model, layer: str, clip: Tensor, raw: Tensor) -> float:
    """Pearson's r of pytorch-grad-cam's Grad-CAM of class 3 and ours (``raw``, the layer's
    (t, h, w) map) scaled and zoomed as theirs is."""
    with pgc.GradCAM(model=model.net, target_layers=[get_layer(model, layer)]) as cam:
        theirs = cam(input_tensor=clip, targets=[ClassifierOutputTarget(3)])[0]  # (T, H, W) in [0, 1]
    model.net.zero_grad(set_to_none=True)  # their .backward() leaves every p.grad set; ours never does
    ours = raw.numpy()
    ours = (ours - ours.min()) / (ours.max() - ours.min() + 1e-7)  # their scale_cam_image, their zoom
    zoomed = zoom(np.float32(ours), [t / s for s, t in zip(ours.shape, theirs.shape)])
    return float(np.corrcoef(zoomed.ravel(), theirs.ravel())[0, 1])


Built = tuple[VideoArch, Model, Tensor]


def test_lrp_conserves_or_warns(small_video: Built) -> None:
    _, model, clip = small_video
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convscope.explain(model, clip, "lrp", target=3)
    with torch.no_grad():
        score = float(model(clip)[0, 3])
    warned = [str(w.message) for w in caught if "LRP relevance is not conserved" in str(w.message)]
    assert bool(torch.isfinite(result.values).all())
    assert abs(float(result.values.sum()) - score) <= 0.05 * abs(score) or warned


def test_integrated_gradients_keeps_its_promise_or_warns(small_video: Built) -> None:
    _, model, clip = small_video
    baseline = torch.zeros_like(clip)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convscope.explain(model, clip, "integrated_gradients", target=3, steps=4,
                                   baseline=baseline, batch_size=4)
    with torch.no_grad():
        gap = float(model(clip)[0, 3] - model(baseline)[0, 3])
    total = float(result.values.sum())
    warned = [str(w.message) for w in caught if "misses F(x) - F(x')" in str(w.message)]
    assert bool(torch.isfinite(result.values).all())
    assert abs(total - gap) <= 0.05 * abs(gap) or warned, (total, gap)


def test_space_time_perturbations_on_mc3() -> None:
    arch, model, _ = built("mc3_18")
    clip = model.preprocess_clips(pan_clip("coffee", arch.frames, arch.side))
    before = snapshot(model)
    occlusion = convscope.explain(model, clip, "occlusion", target=3, window=(4, 24, 24),
                                  stride=(4, 24, 24), batch_size=8)  # 2 x 2 x 2 windows
    rise = convscope.explain(model, clip, "rise", target=3, masks=8, cells=2, batch_size=8)
    assert_unharmed(model, before)
    for result in (occlusion, rise):
        assert result.values.shape == (1, 1, arch.frames, arch.side, arch.side)
        assert bool(torch.isfinite(result.values).all()) and float(result.values.abs().max()) > 0
