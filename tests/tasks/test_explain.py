"""explain(): batches, targets, resolutions, drawing, and errors, through the registry."""

from __future__ import annotations

import copy

import pytest
import torch

from convscope import explain
from convscope.errors import BadArgument, BadLayer, BadTarget
from convscope.model import Model
from tests.as_detections import CLASS_METHODS


@pytest.mark.parametrize("method", CLASS_METHODS)
def test_every_method_gives_input_resolution_maps(tiny: Model, method: str) -> None:
    x = tiny.preprocess(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    options = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}}.get(method, {})
    result = explain(tiny, x, method, target=[1, 2], **options)
    assert result.values.shape[0] == 2 and result.values.shape[-2:] == (16, 16)
    assert torch.isfinite(result.values).all()
    assert result.targets.tolist() == [1, 2] and result.target_labels == ["one", "two"]
    assert len(result.overlays()) == 2 and result.overlay(0).size == (16, 16)
    assert result.overlay(1).tobytes() == result.overlays()[1].tobytes()


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


FEW = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2},
       "occlusion": {"window": 8, "stride": 8}, "rise": {"masks": 8},
       "lime": {"samples": 8, "segments": 4}, "kernel_shap": {"samples": 8, "segments": 4},
       "gradient_shap": {"samples": 3, "draws": 2}, "deeplift_shap": {"draws": 2}}


@pytest.mark.parametrize("target", ["top1", 2])
@pytest.mark.parametrize("method", CLASS_METHODS)
def test_explain_runs_no_forward_pass_beyond_the_methods(tiny: Model, method: str,
                                                          target: object) -> None:
    """explain() reads the target and its score from the method's own forward pass: counted
    with a hook of the user's (copied into the fast path's folded copies, so those count too),
    it runs the network exactly as often as the method object alone, and the scores it reports
    are the network's logits for the explained classes."""
    from convscope.methods.registry import build_method, get_method

    calls: list[int] = []
    handle = tiny.net.register_forward_hook(lambda m, i, o: calls.append(1))
    x = tiny.preprocess(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    try:
        layer = "auto" if get_method(method).needs_layer else None
        build_method(method, tiny, layer, **FEW.get(method, {}))(x, target)  # type: ignore[arg-type]
        alone = len(calls)
        calls.clear()
        result = explain(tiny, x, method, target=target, **FEW.get(method, {}))  # type: ignore[arg-type]
        assert len(calls) == alone
    finally:
        handle.remove()
    with torch.no_grad():
        logits = tiny(x)
    expected = logits.argmax(1) if target == "top1" else torch.full((2,), 2)
    assert result.targets.tolist() == expected.tolist()
    assert torch.allclose(result.scores, logits.gather(1, expected[:, None])[:, 0], atol=1e-5)


def test_explain_reuses_the_method_object_of_the_last_model(tiny: Model) -> None:
    """A second call with the same model, method and options uses the same method object (what
    it prepared, such as LRP's folded network, is kept); another model starts afresh."""
    from convscope.tasks import explain as module

    x = tiny.preprocess(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    explain(tiny, x, "lrp")
    assert module._local.recent is not None
    first = dict(module._local.recent.methods)
    explain(tiny, x, "lrp")
    assert module._local.recent.methods == first and len(first) == 1
    explain(tiny, x, "lrp", epsilon=0.1)
    assert len(module._local.recent.methods) == 2


def test_explain_drops_its_method_objects_when_the_weights_or_modules_change(tiny: Model) -> None:
    """Never a stale explanation: an in-place weight update (an optimizer step), a loaded state
    dict or a swapped module makes the next call build its method objects afresh, and the map
    is the one a fresh method gives on the new weights."""
    from convscope.methods.registry import build_method
    from convscope.tasks import explain as module

    net = copy.deepcopy(tiny)
    x = net.preprocess(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    explain(net, x, "saliency")
    first = module._local.recent
    explain(net, x, "saliency")
    assert module._local.recent is first
    with torch.no_grad():
        next(net.parameters()).mul_(2.0)
    result = explain(net, x, "saliency", target=1)
    assert module._local.recent is not first
    torch.testing.assert_close(result.raw, build_method("saliency", net)(x, 1))
    second = module._local.recent
    net.load_state_dict(tiny.state_dict())
    explain(net, x, "saliency")
    assert module._local.recent is not second
    third = module._local.recent
    name, child = next(iter(net.net.named_children()))
    setattr(net.net, name, copy.deepcopy(child))
    explain(net, x, "saliency")
    assert module._local.recent is not third
