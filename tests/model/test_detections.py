"""The Detection target: matching, scores, refusals, the YOLO adapter, exactness on a toy detector,
and maps that point at the asked digit on the shipped ``digits_detector`` (held-out scenes)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import convscope
from convscope.data.digit_scenes import make_scene
from convscope.errors import BadTarget
from convscope.methods.registry import build_method
from convscope.model import Model, Preprocess, select
from convscope.model.boxes import tlbr_to_xyxy
from convscope.model.detections import drise_similarity, yolo_detections
from convscope.model.targets import parse_box
from convscope.types import Detection

KNOWN = (slice(4, 10), slice(2, 8))
"""Rows and columns of the pixels the toy detector's first detection reads: box (2, 4, 8, 10)."""


class ToyDetector(nn.Module):
    """Two detections per image in torchvision's format: label 1 at (2, 4, 8, 10), scored by the
    pixels inside it only, and label 2 at (10, 10, 16, 16), scored by the rest of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        h = self.conv(x)
        inside = torch.zeros_like(h, dtype=torch.bool)
        inside[:, :, KNOWN[0], KNOWN[1]] = True
        first = (h * inside).flatten(1).sum(1).div(36).sigmoid()
        second = (h * ~inside).flatten(1).mean(1).sigmoid()
        boxes = torch.tensor([[2.0, 4.0, 8.0, 10.0], [10.0, 10.0, 16.0, 16.0]])
        return [{"boxes": boxes, "labels": torch.tensor([1, 2]), "scores": torch.stack([first[i], second[i]])}
                for i in range(x.shape[0])]


@pytest.fixture(scope="module")
def toy() -> Model:
    torch.manual_seed(0)
    return Model(ToyDetector(), preprocess=Preprocess((16, 16), mean=(0.0,), std=(1.0,), channels=1),
                 labels=["background", "one", "two"])


@pytest.fixture(scope="module")
def detector() -> Model:
    return convscope.load_model("digits_detector")


def test_select_scores_the_best_match_by_iou_and_label(toy: Model) -> None:
    x = torch.rand(2, 1, 16, 16)
    out = toy(x)
    near = Detection((2.0, 4.0, 8.0, 11.0), "one")  # IoU 36/42 with the first detection
    assert torch.equal(select(out, near, toy.labels), torch.stack([d["scores"][0] for d in out]))
    with_box = Detection(near.box, 1, box_term=True)
    assert torch.allclose(select(out, with_box, toy.labels) - select(out, near, toy.labels),
                          torch.full((2,), 36 / 42))
    # the right box with the wrong label, or too little overlap: no match, score 0
    assert select(out, Detection(near.box, 2), toy.labels).tolist() == [0.0, 0.0]
    assert select(out, Detection((2.0, 4.0, 8.0, 20.0), 1, iou_threshold=0.7), toy.labels).tolist() == [0, 0]


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients"])
def test_gradient_maps_of_a_detection_stay_on_the_pixels_its_score_reads(toy: Model, method: str) -> None:
    x = torch.rand(1, 1, 16, 16) + 0.1
    options = {"steps": 8} if method == "integrated_gradients" else {}
    result = convscope.explain(toy, x, method=method, target=Detection((2, 4, 8, 10), "one"), **options)
    values = result.values[0, 0].abs()
    outside = values.clone()
    outside[KNOWN] = 0
    assert float(values[KNOWN].sum()) > 0
    assert float(outside.sum()) == 0.0
    score = float(toy(x)[0]["scores"][0])
    words = f"detection #0: one {score:.2f} at (2, 4, 8, 10), IoU 1.00 with the asked box"
    assert result.explained == [words]


@pytest.mark.parametrize(("target", "words"), [
    (Detection((2, 4, 20, 10), 1), "is not inside the 16x16 model input"),
    (Detection((8, 4, 2, 10), 1), "is not inside"),
    (Detection((2, 4, 8, 10), "seven"), "'seven' is not a class label"),
    (Detection((2, 4, 8, 10), 5), "out of range: the model has 3 classes"),
    (Detection((0, 0, 3, 3), 1), "no detection matches one at (0, 0, 3, 3) with IoU >= 0.5; nearest: "
                                 "detection #0: one"),
])
def test_bad_detection_targets_are_refused_in_one_line(toy: Model, target: Detection, words: str) -> None:
    with pytest.raises(BadTarget) as refused:
        convscope.explain(toy, torch.rand(1, 1, 16, 16), method="saliency", target=target)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_a_detection_target_on_a_classifier_is_refused_in_one_line() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = Model(net, preprocess=Preprocess((8, 8), mean=(0.0,), std=(1.0,), channels=1))
    with pytest.raises(BadTarget, match="needs a detector's output"):
        convscope.explain(model, torch.rand(1, 1, 8, 8), method="saliency", target=Detection((0, 0, 4, 4), 1))


def test_parse_box() -> None:
    assert parse_box(" 1, 2.5,3,4") == (1.0, 2.5, 3.0, 4.0)
    for bad in ["1,2,3", "a,b,c,d", "1,2,3,nan"]:
        with pytest.raises(BadTarget, match="four numbers"):
            parse_box(bad)


def test_yolo_adapter_decodes_boxes_scores_and_classes() -> None:
    rows = torch.tensor([[[10.0, 20.0, 4.0, 6.0, 0.9, 0.2, 0.8],    # kept: 0.9 x 0.8, class 1
                          [10.5, 20.0, 4.0, 6.0, 0.5, 0.1, 0.9],    # same place, lower: NMS drops it
                          [50.0, 50.0, 10.0, 10.0, 0.1, 0.9, 0.1]]])  # 0.09 < threshold
    (out,) = yolo_detections(rows)
    assert out["boxes"].tolist() == [[8.0, 17.0, 12.0, 23.0]]
    assert out["labels"].tolist() == [1]
    assert torch.allclose(out["scores"], torch.tensor([0.72]))
    # D-RISE's similarity with the class vector: IoU 1 x cos((0.2, 0.8), (0, 1)) x objectness 0.9
    sim = drise_similarity([out], Detection((8, 17, 12, 23), 1))
    assert torch.allclose(sim, torch.tensor([0.8 / (0.2**2 + 0.8**2) ** 0.5 * 0.9]))


def test_drise_refuses_a_class_target(toy: Model) -> None:
    with pytest.raises(BadTarget, match="drise explains one detection"):
        build_method("drise", toy, None, masks=4)(torch.rand(1, 1, 16, 16), 1)


def test_drise_weights_the_masks_that_keep_the_detection(toy: Model) -> None:
    """The toy's first detection is found in every masked copy (it always scores), so each mask's
    weight is that score: D-RISE is RISE's weighted mean of masks (Eq. 4), here by hand."""
    x = torch.rand(1, 1, 16, 16)
    method = build_method("drise", toy, None, masks=6, cells=4, batch_size=4)
    saliency = method(x, Detection((2, 4, 8, 10), 1))
    grids, shifts = method.sample(16, 16)
    masks = method.upsample(grids, shifts, 16, 16)
    weights = torch.stack([toy(x * m[None])[0]["scores"][0] for m in masks]).detach()
    assert torch.allclose(saliency, (weights.view(-1, 1, 1, 1) * masks).sum(0, keepdim=True) / (6 * 0.5),
                          atol=1e-6)


def _pointing(detector: Model, method: str, scenes: range, **options: object) -> tuple[int, int]:
    """(hits, detections): how often the map's maximum lies in the asked digit's box, over the
    digits of held-out scenes with two or more digits."""
    hits = total = 0
    for index in scenes:
        scene = make_scene("heldout", index)
        if len(scene.labels) < 2:
            continue
        for box, label in zip(tlbr_to_xyxy(scene.boxes).tolist(), scene.labels.tolist()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = convscope.explain(detector, scene.image[None], method=method,
                                           target=Detection(tuple(box), label), **options).values
            row, col = divmod(int(values[0, 0].argmax()), values.shape[-1])
            hits += box[0] <= col < box[2] and box[1] <= row < box[3]
            total += 1
    return hits, total


@pytest.mark.parametrize("method", ["hirescam", "layercam"])
def test_detection_cams_point_at_the_asked_digit(detector: Model, method: str) -> None:
    hits, total = _pointing(detector, method, range(12))
    assert total >= 20 and hits >= 0.9 * total


def test_drise_points_at_the_asked_digit(detector: Model) -> None:
    hits, total = _pointing(detector, "drise", range(6), masks=200, batch_size=100)
    assert total >= 6 and hits >= 0.9 * total


def test_detector_auto_layer_is_the_backbone_map_every_head_reads(detector: Model) -> None:
    result = convscope.explain(detector, make_scene("heldout", 5).image[None], method="gradcam",
                               target=Detection((38, 81, 57, 105), 6))
    assert result.layer == "backbone.neck"
    assert "detector's backbone" in (result.layer_reason or "")
    assert result.explained is not None and result.explained[0].startswith("detection #3: 6 0.73")
