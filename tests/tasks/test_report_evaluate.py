"""convscope.report and convscope.evaluate in Python: dataclasses with the maps and numbers."""

from __future__ import annotations

import json

import pytest
import torch

import convscope
from convscope.errors import BadArgument
from convscope.model import Model


@pytest.fixture
def images() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(3, 20, 24, generator=gen) for _ in range(2)]


def test_report_holds_each_methods_explanation_scores_and_errors(tiny: Model, images) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple[int, int]] = []
    page = convscope.report(tiny, images, "saliency,gradcam", target=2, layer="conv2",
                            faithfulness_steps=3, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4) and len(page.images) == 2
    first = page.images[0]
    assert first.target == 2 and first.target_label == "two"
    assert first.image.shape == (3, 20, 24)  # the photo itself: overlays are drawn on it
    assert [m.method for m in first.methods] == ["saliency", "gradcam"]
    for m in first.methods:
        assert m.error is None and m.explanation is not None
        assert m.explanation.targets.tolist() == [2]
        assert 0 <= m.deletion_auc <= 1 and 0 <= m.insertion_auc <= 1  # type: ignore[operator]
    assert first.methods[1].explanation.layer == "conv2"  # type: ignore[union-attr]
    json.dumps(page.summary())
    assert "deletion AUC" in page.html() and "image 1" in page.html()
    bad = convscope.report(tiny, images[:1], ["gradcam"], layer="fc", faithfulness_steps=0)
    assert bad.images[0].methods[0].error and bad.images[0].methods[0].explanation is None


def test_evaluate_scales_boxes_and_scores_every_method(tiny: Model, images) -> None:  # type: ignore[no-untyped-def]
    result = convscope.evaluate(tiny, images, ["saliency", "cam"], target="top1", steps=4,
                                boxes=[[0, 0, 20, 24], [5, 6, 15, 18]])
    with torch.no_grad():
        top = tiny(tiny.preprocess(images)).argmax(1)
    assert result.targets.tolist() == top.tolist()
    # boxes in photo pixels -> the centre crop the model saw (cols 2-22 of 24, scale 16/20)
    assert result.boxes.tolist() == [[0, 0, 16, 16], [4, 3, 12, 13]]  # type: ignore[union-attr]
    cam = result.methods[1].per_image
    assert cam["pointing_game"][0] == 1.0 and cam["energy"][0] == pytest.approx(1.0)
    summary = result.summary()
    assert [m["method"] for m in summary["methods"]] == ["saliency", "cam"]
    json.dumps(summary)
    with pytest.raises(BadArgument, match="one box per image"):
        convscope.evaluate(tiny, images, "saliency", boxes=[[0, 0, 5, 5]])
    with pytest.raises(BadArgument, match="does not fit"):
        convscope.evaluate(tiny, images, "saliency", boxes=[[0, 0, 30, 5], [0, 0, 5, 5]])


def test_evaluate_reruns_the_method_for_robustness_and_randomization_metrics(tiny: Model, images) -> None:  # type: ignore[no-untyped-def]
    """The metrics that need the method get it re-run with other inputs, models and classes."""
    result = convscope.evaluate(tiny, images, "saliency", steps=4,
                                metrics="avg_sensitivity,random_logit,efficient_mprt,sparseness")
    scores = result.methods[0].per_image
    assert set(scores) == {"avg_sensitivity", "random_logit", "efficient_mprt", "sparseness"}
    assert all(len(v) == 2 and all(x == x for x in v) for v in scores.values())  # no NaN
