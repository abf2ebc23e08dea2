"""Weakly supervised localization: threshold, largest component, boxes, IoU."""

from __future__ import annotations

import pytest
import torch

from convscope.errors import BadArgument
from convscope.methods.evaluation import box_iou, localize, mask_boxes, threshold_mask


def _two_blobs() -> torch.Tensor:
    """A big flat blob (rows 2-11, cols 3-12) and a small, brighter one (rows 20-22, cols 25-27)."""
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 2:12, 3:13] = 1.0
    m[0, 0, 20:23, 25:28] = 2.0
    return m


def test_bigger_blob_wins_over_brighter_one() -> None:
    loc = localize(_two_blobs())
    assert loc.boxes.tolist() == [[2, 3, 12, 13]]  # (top, left, bottom, right), exclusive ends
    assert loc.mask.shape == (1, 1, 32, 32) and loc.mask.dtype == torch.bool
    assert int(loc.mask.sum()) == 100
    # Raise the bar above the big blob (1.0 < 0.6 * 2.0): only the small one is left.
    assert localize(_two_blobs(), threshold=0.6).boxes.tolist() == [[20, 25, 23, 28]]


def test_threshold_is_a_fraction_of_each_maps_own_maximum() -> None:
    ramp = torch.arange(10.0).repeat(2, 1, 10, 1)  # (2, 1, 10, 10), value = column index
    ramp[1] *= 5  # the same map at another scale: the same mask
    mask = threshold_mask(ramp, 0.5)
    assert mask[:, 0, 0].tolist() == [[False] * 5 + [True] * 5] * 2  # 4.5 cut: 5..9 kept
    assert threshold_mask(ramp, 1.0)[:, 0, 0].sum(1).tolist() == [1, 1]  # max itself kept
    assert threshold_mask(ramp, 0.0).all()  # 0 keeps every value >= 0
    assert localize(ramp, threshold=0.5).boxes.tolist() == [[0, 5, 10, 10]] * 2


def test_maps_without_positive_evidence_keep_nothing() -> None:
    maps = torch.stack([torch.zeros(1, 8, 8), -torch.rand(1, 8, 8)])
    loc = localize(maps)
    assert not loc.mask.any()
    assert loc.boxes.tolist() == [[0, 0, 0, 0]] * 2


def test_connectivity() -> None:
    m = torch.zeros(1, 6, 6)  # (B, H, W) accepted too
    m[0, 1:3, 1:3] = 1
    m[0, 3:5, 3:5] = 1  # touches the first square at a corner only
    m[0, 0, 5] = 1
    assert localize(m).boxes.tolist() == [[1, 1, 5, 5]]
    assert localize(m, connectivity=4).boxes.tolist() == [[1, 1, 3, 3]]  # tie: first found


def test_batch_of_maps_and_devices_and_dtypes() -> None:
    maps = torch.zeros(3, 1, 16, 20, dtype=torch.float64)
    maps[0, 0, 0:4, 0:5] = 1
    maps[1, 0, 10:16, 12:20] = 3
    maps[2, 0, 7, 9] = 0.1
    boxes = localize(maps).boxes
    assert boxes.dtype == torch.long
    assert boxes.tolist() == [[0, 0, 4, 5], [10, 12, 16, 20], [7, 9, 8, 10]]


def test_bad_arguments() -> None:
    with pytest.raises(BadArgument, match="threshold"):
        localize(_two_blobs(), threshold=1.5)
    with pytest.raises(BadArgument, match="one channel"):
        localize(torch.rand(1, 3, 8, 8))
    with pytest.raises(BadArgument, match="connectivity"):
        localize(_two_blobs(), connectivity=6)  # type: ignore[arg-type]


def test_mask_boxes_of_any_mask() -> None:
    mask = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    mask[0, 0, 1, 2] = mask[0, 0, 3, 4] = True
    assert mask_boxes(mask).tolist() == [[1, 2, 4, 5], [0, 0, 0, 0]]


def test_box_iou() -> None:
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]])
    b = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [2, 2, 4, 4], [0, 0, 0, 0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([1.0, 1 / 7, 0.0, 0.0]))
    assert box_iou(a[:, None], b[None]).shape == (4, 4)  # pairwise table by broadcasting
    torch.testing.assert_close(box_iou(torch.tensor([0, 0, 10, 10]), torch.tensor([0, 0, 10, 5])),
                               torch.tensor(0.5))
    with pytest.raises(BadArgument, match="top, left, bottom, right"):
        box_iou(torch.zeros(2, 3), torch.zeros(2, 4))
