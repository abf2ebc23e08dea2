"""mIoU and mAP on hand-built cases: perfect = 1, disjoint = 0, known partial overlaps, and a
ranked list whose AP is worked out by hand (Pascal VOC all-point interpolation)."""

from __future__ import annotations

import math

import pytest
import torch

from convscope.data.dense_scores import average_precision, class_iou, mean_average_precision, mean_iou
from convscope.errors import BadArgument


def test_mean_iou_perfect_disjoint_and_half() -> None:
    truth = torch.zeros(2, 4, 4, dtype=torch.long)
    truth[0, :2] = 1  # 8 pixels of class 1
    assert mean_iou(truth, truth, 3) == 1.0
    swapped = 1 - truth  # every pixel wrong: classes 0 and 1 swapped
    assert mean_iou(swapped, truth, 3) == 0.0
    half = truth.clone()
    half[0, 1] = 0  # class 1 predicted on 4 of its 8 pixels
    iou = class_iou(half, truth, 3)
    assert iou[1].item() == pytest.approx(0.5)  # 4 / 8
    assert iou[0].item() == pytest.approx(24 / 28)  # 24 hits, union 24 + 4 missed
    assert math.isnan(iou[2].item())  # class 2 in neither: left out of the mean
    assert mean_iou(half, truth, 3) == pytest.approx((0.5 + 24 / 28) / 2)
    with pytest.raises(BadArgument, match="does not match"):
        mean_iou(truth[0], truth, 3)


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float).view(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long), "scores": torch.tensor(scores)}


def _truth(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float).view(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long)}


def test_average_precision_perfect_disjoint_and_half() -> None:
    truth = [_truth([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]), _truth([[5, 5, 15, 15]], [2])]
    perfect = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.9, 0.8]),
               _dets([[5, 5, 15, 15]], [2], [0.7])]
    assert mean_average_precision(perfect, truth, 3) == 1.0
    disjoint = [_dets([[50, 50, 60, 60]], [1], [0.9]), _dets([[40, 40, 45, 45]], [2], [0.9])]
    assert mean_average_precision(disjoint, truth, 3) == 0.0
    wrong_label = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [2, 2], [0.9, 0.8]), _dets([], [], [])]
    assert mean_average_precision(wrong_label, truth, 3) == 0.0
    one_of_two = [_dets([[0, 0, 10, 10]], [1], [0.9]), _dets([[5, 5, 15, 15]], [2], [0.7])]
    assert average_precision(one_of_two, truth, 1) == pytest.approx(0.5)  # recall 1/2 at precision 1
    assert average_precision(one_of_two, truth, 0) is None  # no true box of label 0
    assert mean_average_precision(one_of_two, truth, 3) == pytest.approx(0.75)


def test_iou_threshold_is_inclusive_and_a_duplicate_is_a_false_positive() -> None:
    truth = [_truth([[0, 0, 10, 10]], [0])]
    half = [_dets([[0, 0, 10, 5]], [0], [0.9])]  # IoU exactly 50 / 100
    assert average_precision(half, truth, 0, iou_threshold=0.5) == 1.0
    assert average_precision(half, truth, 0, iou_threshold=0.6) == 0.0
    # the second box of the same digit is a false positive ranked above nothing: AP stays 1;
    # ranked above the hit it halves the precision at full recall
    assert average_precision([_dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.5])], truth, 0) == 1.0
    assert average_precision([_dets([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.9, 0.5])],
                             truth, 0) == pytest.approx(0.5)


def test_average_precision_of_a_ranked_list_worked_by_hand() -> None:
    """Three true boxes; ranked hit, miss, hit, miss, hit: precision 1, 1/2, 2/3, 1/2, 3/5 at
    recall 1/3, 1/3, 2/3, 2/3, 1; the monotone envelope gives AP = (1 + 2/3 + 3/5) / 3."""
    truth = [_truth([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [4, 4, 4])]
    found = [_dets([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 10], [80, 0, 90, 10], [40, 0, 50, 10]],
                   [4] * 5, [0.9, 0.8, 0.7, 0.6, 0.5])]
    assert average_precision(found, truth, 4) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(BadArgument, match="images of detections"):
        average_precision([], [_truth([], [])], 0)
    with pytest.raises(BadArgument, match="no true boxes"):
        mean_average_precision([_dets([], [], [])], [_truth([], [])], 10)
