"""explain(): batches, targets, resolutions, drawing, and errors, through the registry."""

from __future__ import annotations

import pytest
import torch

from convscope import explain
from convscope.errors import BadArgument, BadLayer, BadTarget
from convscope.methods.registry import method_names
from convscope.model import Model


@pytest.mark.parametrize("method", method_names())
def test_every_method_gives_input_resolution_maps(tiny: Model, method: str) -> None:
    x = tiny.preprocess(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}}.get(method, {})
    result = explain(tiny, x, method, target=[1, 2], **options)
    assert result.values.shape[0] == 2 and result.values.shape[-2:] == (16, 16)
    assert torch.isfinite(result.values).all()
    assert result.targets.tolist() == [1, 2] and result.target_labels == ["one", "two"]
    assert len(result.overlay()) == 2 and result.overlay(0).size == (16, 16)


def test_layer_maps_are_upsampled_and_raw_kept(lite0: Model) -> None:
    result = explain(lite0, "sample:cat", "gradcam", target="Egyptian cat")
    assert result.layer == "_relu_head"
    assert result.raw.shape == (1, 1, 7, 7) and result.values.shape == (1, 1, 224, 224)
    assert result.targets.tolist() == [285] and result.scores[0] > 5


def test_one_image_many_targets(lite0: Model) -> None:
    result = explain(lite0, "sample:cat", "cam", target=[285, 967])
    assert result.values.shape == (2, 1, 224, 224)
    assert not torch.allclose(result.values[0], result.values[1])


def test_many_images_top1(lite0: Model) -> None:
    result = explain(lite0, ["sample:cat", "sample:coffee"], "saliency")
    assert result.targets.tolist() == [285, 967]
    assert result.target_labels == ["Egyptian cat", "espresso"]


def test_save_writes_one_png_per_sample(tmp_path, tiny: Model) -> None:
    x = tiny.preprocess(torch.rand(2, 3, 16, 16))
    paths = explain(tiny, x, "gradcam", target=0).save(tmp_path / "map.png")
    assert [p.name for p in paths] == ["map_0.png", "map_1.png"] and all(p.is_file() for p in paths)


def test_summary_is_json_ready(tiny: Model) -> None:
    import json

    summary = explain(tiny, tiny.preprocess(torch.rand(1, 3, 16, 16)), "saliency").summary()
    assert json.loads(json.dumps(summary))["method"] == "saliency"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"method": "gradcamm"}, BadArgument, "did you mean gradcam"),
    ({"method": "gradcam", "layer": "fc9"}, BadLayer, "not in the model"),
    ({"method": "saliency", "layer": "conv1"}, BadArgument, "does not take a layer"),
    ({"method": "saliency", "steps": 3}, BadArgument, "no option 'steps'"),
    ({"method": "saliency", "target": "seven"}, BadTarget, "not a class label"),
    ({"method": "integrated_gradients", "steps": 0}, BadArgument, "steps"),
])
def test_bad_requests(tiny: Model, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        explain(tiny, tiny.preprocess(torch.rand(1, 3, 16, 16)), **kwargs)
