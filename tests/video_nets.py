"""Toy 3-D CNNs and clips whose right answers are known by construction (video tests)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from convscope.model import Model, Preprocess

FRAMES, SIDE = 8, 16
BLOB = 4
MOVING_FRAMES = range(2, 7)
"""The moving blob is in frames 2..6, one step right per frame; frames 0, 1 and 7 have none."""
STATIC = (10, 2)
"""(top, left) of the static blob, present in every frame."""


def moving_x(frame: int) -> int:
    return 2 + 2 * (frame - MOVING_FRAMES[0])


def blob_clip() -> Tensor:
    """(1, 3, T, H, W): a bright square moving right in frames 2..6 on black, and a static one."""
    clip = torch.zeros(1, 3, FRAMES, SIDE, SIDE)
    top, left = STATIC
    clip[:, :, :, top:top + BLOB, left:left + BLOB] = 1.0
    for t in MOVING_FRAMES:
        clip[:, :, t, 2:2 + BLOB, moving_x(t):moving_x(t) + BLOB] = 1.0
    return clip


def moving_mask() -> Tensor:
    """(T, H, W) bool: the moving blob's voxels."""
    mask = torch.zeros(FRAMES, SIDE, SIDE, dtype=torch.bool)
    for t in MOVING_FRAMES:
        mask[t, 2:2 + BLOB, moving_x(t):moving_x(t) + BLOB] = True
    return mask


class MotionNet(nn.Module):
    """Hand-built: channel 0 of ``diff`` fires where a voxel brightens from one frame to the
    next, channel 1 where it darkens; class 0 ("motion") is their mean, class 1 its negative.
    A static pattern, however bright, gives no evidence."""

    def __init__(self) -> None:
        super().__init__()
        self.diff = nn.Conv3d(3, 2, (2, 1, 1), bias=False)
        with torch.no_grad():
            step = torch.tensor([-1.0, 1.0]) / 3  # (later frame - earlier frame), RGB averaged
            self.diff.weight.zero_()
            self.diff.weight[0, :, :, 0, 0] = step
            self.diff.weight[1, :, :, 0, 0] = -step
        self.relu = nn.ReLU()
        self.pool, self.flat = nn.AdaptiveAvgPool3d(1), nn.Flatten()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.flat(self.pool(self.relu(self.diff(x)))))


def motion_model() -> Model:
    return Model(MotionNet().eval(), preprocess=Preprocess(input_size=(SIDE, SIDE), frames=2,
                                                           mean=(0.0,) * 3, std=(1.0,) * 3),
                 labels=["motion", "still"])


class WindowNet(nn.Module):
    """A random 3-D CNN that sees only the voxels of ``window`` (t, y, x slices): its input is
    multiplied by a fixed mask first, so every gradient outside the window is exactly zero."""

    def __init__(self, window: tuple[slice, slice, slice], seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        mask = torch.zeros(1, 1, FRAMES, SIDE, SIDE)
        mask[(0, 0, *window)] = 1.0
        self.register_buffer("mask", mask)
        self.features = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(),
                                      nn.Conv3d(6, 8, 3, padding=1), nn.ReLU())
        self.pool, self.head = nn.AdaptiveAvgPool3d(1), nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x * self.mask)).flatten(1))


class BrightNet(nn.Module):
    """Hand-built: class 0 is the clip's mean brightness above 0.5 (RGB averaged), class 1 its
    negative: the evidence is exactly the bright voxels, whenever they are."""

    def __init__(self) -> None:
        super().__init__()
        self.light = nn.Conv3d(3, 1, 1)
        with torch.no_grad():
            self.light.weight.fill_(1 / 3)
            self.light.bias.fill_(-0.5)
        self.relu, self.pool = nn.ReLU(), nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.relu(self.light(x))).flatten(1))


def bright_model() -> Model:
    return Model(BrightNet().eval(), preprocess=Preprocess(input_size=(SIDE, SIDE), frames=1,
                                                           mean=(0.0,) * 3, std=(1.0,) * 3))


def moving_only_clip() -> Tensor:
    """(1, 3, T, H, W): the moving blob of :func:`blob_clip` alone."""
    return moving_mask().float()[None, None].expand(1, 3, -1, -1, -1).clone()
