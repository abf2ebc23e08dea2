"""convscope's plain-torch box IoU and NMS agree with torchvision.ops on random boxes."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from convscope.model.boxes import batched_nms, box_iou, nms


def test_box_iou_and_nms_match_torchvision() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        corner = torch.rand(60, 2, generator=gen) * 100
        boxes = torch.cat([corner, corner + 5 + torch.rand(60, 2, generator=gen) * 30], 1)
        scores = torch.rand(60, generator=gen)
        labels = torch.randint(3, (60,), generator=gen)
        assert torch.allclose(box_iou(boxes, boxes[:20]), tv_box_iou(boxes, boxes[:20]), atol=1e-6)
        for threshold in (0.3, 0.5, 0.7):
            assert torch.equal(nms(boxes, scores, threshold), tv_nms(boxes, scores, threshold))
            assert torch.equal(batched_nms(boxes, scores, labels, threshold),
                               tv_batched_nms(boxes, scores, labels, threshold))
