"""Box IoU and non-maximum suppression on hand-built boxes (tests/zoo/test_boxes_reference.py
compares them with torchvision.ops on random boxes)."""

from __future__ import annotations

import torch

from convscope.model.boxes import batched_nms, box_iou, nms, tlbr_to_xyxy, xyxy_to_tlbr


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 4, 2]])
    b = torch.tensor([[0.0, 0, 2, 2], [4.0, 0, 6, 2], [0, 0, 4, 2], [1, 1, 1, 1]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[0.5, 0.0, 1.0, 0.0]]))
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 4)


def test_corner_orders_swap_back() -> None:
    tlbr = torch.tensor([[1, 2, 5, 9]])  # rows 1-4, columns 2-8
    assert tlbr_to_xyxy(tlbr).tolist() == [[2.0, 1.0, 9.0, 5.0]]
    assert torch.equal(xyxy_to_tlbr(tlbr_to_xyxy(tlbr)).long(), tlbr)


def test_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.4])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 and 3 overlap box 1 by IoU > 0.5
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 3, 2]
    labels = torch.tensor([0, 1, 0, 0])  # box 1 has another label: it suppresses nothing
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 0, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
