"""torchvision's detectors at random init: the Detection target, D-RISE and Grad-CAM of one
detection, "auto", the model-safety contract, and agreement with pytorch-grad-cam's
``FasterRCNNBoxScoreTarget``.

Random-init detectors score every box about 1/classes, under torchvision's default thresholds, so
they are built with a zero score threshold and few detections per image; the two-stage ones read
small images (``min_size``/``max_size`` 128). pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``
scores a detection as ours does with ``box_term=True`` (its score plus its IoU with the asked
box). The definitions differ where several detections overlap the box: it takes the detection of
highest IoU whatever its label and then requires the asked label (ours: the highest IoU among
detections of the asked label), its IoU test is strict (``>``, ours ``>=``), and it sums over
several asked boxes (ours: one). The test asks for a detection's own box, where they coincide.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch import Tensor
from torchvision.models import get_model

import convscope
from convscope.model import Model, Preprocess, get_layer
from convscope.types import Detection
from tests.model_safety import assert_unharmed, snapshot

SMALL = {"min_size": 128, "max_size": 128}
DETECTORS: dict[str, dict[str, Any]] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 5, **SMALL},
    "maskrcnn_resnet50_fpn": {"box_score_thresh": 0.0, "box_detections_per_img": 5, **SMALL},
    "fcos_resnet50_fpn": {"score_thresh": 0.0, "detections_per_img": 5, **SMALL},
    "ssdlite320_mobilenet_v3_large": {"score_thresh": 0.0, "detections_per_img": 5},
}


def build(name: str) -> Model:
    torch.manual_seed(0)
    net = get_model(name, weights=None, weights_backbone=None, num_classes=5, **DETECTORS[name]).eval()
    return Model(net, preprocess=Preprocess((128, 128), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


@pytest.fixture(scope="module", params=list(DETECTORS))
def detector(request: pytest.FixtureRequest) -> Model:
    return build(request.param)


def _first_detection(model: Model, x: Tensor) -> Detection:
    with torch.no_grad():
        (out,) = model(x)
    assert len(out["scores"]) > 0, "no detection: lower the score threshold"
    return Detection(tuple(out["boxes"][0].tolist()), int(out["labels"][0]))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def image() -> Tensor:
    return torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["gradcam", "saliency", "drise"])
def test_a_detection_is_explained_unharmed_with_finite_maps(detector: Model, image: Tensor,
                                                            method: str) -> None:
    target = _first_detection(detector, image)
    before = snapshot(detector)
    options = {"masks": 8, "batch_size": 8} if method == "drise" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random-init detector may lose its box in every masked copy
        result = convscope.explain(detector, image, method=method, target=target, **options)
    assert_unharmed(detector, before)
    values = result.values
    assert isinstance(values, Tensor) and values.shape[-2:] == (128, 128) and values.isfinite().all()
    assert result.explained is not None and result.explained[0].startswith("detection #0: ")
    if method == "saliency":  # the score's gradient reaches the pixels (a random-init Grad-CAM
        assert float(values.abs().sum()) > 0  # may be all zero after its ReLU)


def test_auto_reads_the_backbone(detector: Model, image: Tensor) -> None:
    result = convscope.explain(detector, image, method="gradcam", target=_first_detection(detector, image))
    assert result.layer is not None and result.layer.startswith("backbone.")
    assert "detector's backbone" in (result.layer_reason or "")


FASTER = "fasterrcnn_mobilenet_v3_large_320_fpn"


def test_gradcam_of_a_detection_agrees_with_pytorch_grad_cam(image: Tensor) -> None:
    detector = build(FASTER)
    layer = "backbone.body.16"
    target = _first_detection(detector, image)
    ours = convscope.explain(detector, image, method="gradcam", layer=layer,
                             target=Detection(target.box, target.label, box_term=True)).values[0, 0]
    reference = FasterRCNNBoxScoreTarget(labels=[target.label], bounding_boxes=torch.tensor([target.box]),
                                         iou_threshold=0.5)
    cam = GradCAM(model=detector.net, target_layers=[get_layer(detector.net, layer)])
    try:
        theirs = cam(input_tensor=image, targets=[reference])[0]
    finally:  # pytorch-grad-cam calls backward(): the parameters' .grad must not reach other tests
        cam.activations_and_grads.release()
        detector.net.zero_grad(set_to_none=True)
    r = float(np.corrcoef(ours.double().flatten().numpy(), theirs.astype(np.float64).flatten())[0, 1])
    assert r >= 0.99, r
