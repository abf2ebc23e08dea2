"""Clips and volumes (B, C, T, H, W): every method that takes them, on toy 3-D CNNs whose right
answers are known by construction (tests/video_nets.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

from convscope import explain
from convscope.errors import BadArgument, BadImage, BadLayer, MethodFailed
from convscope.methods.attribution.base import clip_methods
from convscope.methods.registry import build_method
from convscope.model import Model, Preprocess, auto_layer
from convscope.model.layers import choose_layer
from tests.video_nets import (
    BLOB,
    FRAMES,
    MOVING_FRAMES,
    SIDE,
    STATIC,
    WindowNet,
    blob_clip,
    bright_model,
    motion_model,
    moving_mask,
    moving_only_clip,
)

WINDOW = (slice(2, 5), slice(3, 9), slice(4, 12))
GRADIENT_METHODS = ["saliency", "gradient_x_input", "integrated_gradients", "guided_backprop", "deconvnet",
                    "smoothgrad", "deeplift", "gradient_shap", "deeplift_shap"]
CAMS = ["cam", "gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam", "eigengradcam", "scorecam",
        "ablationcam"]


def window_model() -> Model:
    return Model(WindowNet(WINDOW).eval(), preprocess=Preprocess(input_size=(SIDE, SIDE), frames=FRAMES))


def clips(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, FRAMES, SIDE, SIDE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_maps_are_zero_outside_the_voxels_the_score_reads(name: str) -> None:
    result = explain(window_model(), clips(), name, target=1)
    maps = result.values.abs().sum(1)  # (B, T, H, W)
    inside = torch.zeros(FRAMES, SIDE, SIDE, dtype=torch.bool)
    inside[WINDOW] = True
    assert maps.shape == (2, FRAMES, SIDE, SIDE)
    assert float(maps[:, ~inside].max()) == 0.0
    assert bool((maps[:, inside].flatten(1).amax(1) > 0).all())


def test_integrated_gradients_is_complete_on_clips() -> None:
    model, x = window_model(), clips()
    baseline = torch.zeros_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the run-time completeness check stays silent too
        result = explain(model, x, "integrated_gradients", target=2, baseline=baseline, steps=64)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(baseline)[:, 2]
    total = result.values.flatten(1).sum(1)
    assert torch.allclose(total, gap, rtol=1e-2, atol=1e-6)


def test_auto_layer_of_a_3d_cnn_is_its_last_spatial_map() -> None:
    assert auto_layer(window_model()) == "features"
    assert auto_layer(motion_model()) == "relu"
    # the dry run's clip has frames=2 frames: diff makes 1, shown as C x t x h x w
    assert choose_layer(motion_model()).reason.endswith("(2x1x16x16)")


@pytest.mark.parametrize("name", CAMS)
def test_cams_point_at_the_moving_blob_and_never_at_the_static_one(name: str) -> None:
    result = explain(motion_model(), blob_clip(), name, target="motion")
    assert result.raw.shape == (1, 1, FRAMES - 1, SIDE, SIDE)  # the layer's (t, h, w)
    maps = result.values[0, 0]  # trilinear to (T, H, W)
    assert maps.shape == (FRAMES, SIDE, SIDE)
    # the layer's t-1 frames are changes between frames: the blob's place in a neighbouring frame counts
    mask = moving_mask()
    near = mask | torch.cat([mask[1:], mask[-1:] & False]) | torch.cat([mask[:1] & False, mask[:-1]])
    peak = torch.unravel_index(maps.argmax(), maps.shape)
    assert bool(near[peak])
    assert float(maps[near].mean()) > 10 * float(maps[~near].mean())
    top, left = STATIC
    assert float(maps[:, top:top + BLOB, left:left + BLOB].abs().max()) == 0.0


def test_gradcam_weights_pool_over_time_and_space() -> None:
    """On GAP + linear, Grad-CAM is CAM / (t h w): the weights are mean gradients over (t, h, w)."""
    model, x = motion_model(), blob_clip()
    cam = explain(model, x, "cam", target=0).raw
    grad = explain(model, x, "gradcam", target=0).raw
    assert torch.allclose(grad * (FRAMES - 1) * SIDE * SIDE, cam, rtol=1e-5, atol=1e-7)


def test_occlusion_slides_space_time_windows() -> None:
    model, x = motion_model(), blob_clip()
    method = build_method("occlusion", model, None, window=(2, BLOB, BLOB), stride=(1, 2, 2), batch_size=64)
    assert [c.shape for c in method.grid(FRAMES, SIDE, SIDE)] == [(7, FRAMES), (7, SIDE), (7, SIDE)]
    maps = method(x, 0)[0, 0]
    assert maps.shape == (FRAMES, SIDE, SIDE)
    peak = torch.unravel_index(maps.argmax(), maps.shape)
    assert bool(moving_mask()[peak])
    # hiding part of the static blob in time makes it blink (evidence of motion): small negative drops
    assert float(maps[moving_mask()].mean()) > 3 * float(maps[~moving_mask()].abs().mean())


def test_occlusion_of_one_window_equals_the_score_drop() -> None:
    """One window covering the whole clip: every voxel gets f(x) - f(baseline)."""
    model, x = motion_model(), blob_clip()
    maps = build_method("occlusion", model, None, window=(FRAMES, SIDE, SIDE), baseline="black")(x, 0)
    with torch.no_grad():
        drop = model(x)[0, 0] - model(torch.zeros_like(x))[0, 0]
    assert torch.allclose(maps, drop.expand_as(maps), atol=1e-6)


def test_rise_masks_over_time_point_at_the_frames_and_places_of_the_evidence() -> None:
    model, x = bright_model(), moving_only_clip()
    method = build_method("rise", model, None, masks=1000, cells=4, time_cells=FRAMES, output="logit",
                          batch_size=250)
    grids, shifts = method.sample(FRAMES, SIDE, SIDE)
    assert grids.shape == (1000, 1, FRAMES, 4, 4) and shifts.shape == (1000, 3)
    maps = method(x, 0)[0, 0]
    assert float(maps[moving_mask()].mean()) > float(maps[~moving_mask()].mean())
    per_frame = maps.flatten(1).mean(1)
    quiet = [t for t in range(FRAMES) if t not in MOVING_FRAMES]
    assert float(per_frame[list(MOVING_FRAMES)].min()) > float(per_frame[quiet].max())


def test_a_window_longer_than_the_clip_is_refused_in_one_line() -> None:
    method = build_method("occlusion", motion_model(), None, window=(FRAMES + 1, 4, 4))
    needle = f"the clip has {FRAMES} frames, fewer than the window's {FRAMES + 1}"
    with pytest.raises(BadArgument, match=needle):
        method(blob_clip(), 0)


def test_a_clip_to_an_image_model_is_refused_in_one_line() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model = Model(net.eval(), preprocess=Preprocess(input_size=(SIDE, SIDE)))
    with pytest.raises(MethodFailed, match=r"2-D convolutions only and takes \(B, C, H, W\) images") as err:
        explain(model, clips(), "saliency")
    assert "\n" not in str(err.value)


def test_images_to_a_3d_model_and_a_3d_model_without_frames_are_refused_in_one_line() -> None:
    with pytest.raises(MethodFailed, match=r"3-D convolutions only and takes \(B, C, T, H, W\) clips"):
        build_method("saliency", window_model(), None)(torch.randn(1, 3, SIDE, SIDE), 0)
    bare = Model(WindowNet(WINDOW).eval(), preprocess=Preprocess(input_size=(SIDE, SIDE)))
    with pytest.raises(BadLayer, match=r"--frames T; Preprocess\(frames=T\)"):
        build_method("gradcam", bare, "auto")


def test_too_few_frames_for_the_model_is_refused_in_one_line() -> None:
    model = Model(WindowNet(WINDOW).eval(), preprocess=Preprocess(input_size=(SIDE, SIDE), frames=FRAMES))
    with pytest.raises(BadImage, match=f"video with 3 frames: model 'custom' needs at least {FRAMES}"):
        model.preprocess_clips(torch.rand(3, 3, SIDE, SIDE))


@pytest.mark.parametrize("name", ["lime", "kernel_shap", "fullgrad"])
def test_methods_without_clips_refuse_them_and_name_those_with(name: str) -> None:
    with pytest.raises(BadImage, match=r"not the \(B, C, T, H, W\) clips") as err:
        explain(motion_model(), blob_clip(), name)
    assert "gradcam" in str(err.value) and name not in clip_methods()


def test_explanation_of_a_clip_draws_a_strip_and_an_animation() -> None:
    from PIL import Image

    result = explain(motion_model(), blob_clip(), "gradcam", target=0)
    assert result.is_clip and result.images is not None and result.images.shape == (1, 3, FRAMES, SIDE, SIDE)
    strip = result.overlay(0)
    assert strip.width > strip.height  # frames side by side, two rows
    for fmt in ("gif", "webp"):
        import io

        with Image.open(io.BytesIO(result.animation(0, format=fmt))) as animated:
            assert animated.n_frames == FRAMES
    assert result._repr_png_() is not None  # a notebook shows the strip
    assert result.map_array(0).shape == (FRAMES, SIDE, SIDE)
    with pytest.raises(BadArgument, match="a video clip's map has no one box"):
        result.localize()
