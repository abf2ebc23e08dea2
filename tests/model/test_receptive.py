"""Receptive fields measured by gradient probing equal the analytic ones of conv/pool chains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import BadArgument, BadLayer
from convscope.model import Model, Preprocess
from convscope.model.efficientnet_lite import LITE0_STAGES, EfficientNetLite0
from convscope.model.receptive import Box, field_geometry, receptive_field, receptive_fields

Layer = tuple[int, int, int, int]  # kernel, stride, padding, dilation


def analytic(layers: list[Layer]) -> tuple[int, int, int]:
    """(size, stride, offset) of a chain: unit y sees [offset + y*stride, ... + size)."""
    size, jump, start = 1, 1, 0
    for kernel, stride, padding, dilation in layers:
        size += (kernel - 1) * dilation * jump
        start -= padding * jump
        jump *= stride
    return size, jump, start


def analytic_box(layers: list[Layer], y: int, x: int, hw: tuple[int, int]) -> Box:
    size, jump, start = analytic(layers)
    top, left = start + y * jump, start + x * jump
    return Box(max(top, 0), max(left, 0), min(top + size, hw[0]), min(left + size, hw[1]))


def chain(layers: list[Layer], dead: bool = False) -> nn.Sequential:
    """Conv-ReLU chain; ``dead`` makes every ReLU output zero (so plain gradients vanish)."""
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    cin = 3
    for kernel, stride, padding, dilation in layers:
        conv = nn.Conv2d(cin, 4, kernel, stride, padding, dilation)
        if dead:
            nn.init.constant_(conv.bias, -1e3)
        mods += [conv, nn.ReLU(inplace=True)]
        cin = 4
    return nn.Sequential(*mods)


CHAINS: dict[str, list[Layer]] = {
    "two 3x3": [(3, 1, 0, 1), (3, 1, 0, 1)],
    "3x3 s2 then 3x3": [(3, 2, 1, 1), (3, 1, 1, 1)],
    "5x5 s2, 3x3 s2, 3x3": [(5, 2, 2, 1), (3, 2, 1, 1), (3, 1, 1, 1)],
    "dilated": [(3, 1, 2, 2), (3, 2, 0, 1), (3, 1, 0, 3)],
}


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dead", [False, True])
def test_conv_chains_match_analytic_fields(name: str, dead: bool) -> None:
    layers = CHAINS[name]
    net = chain(layers, dead=dead)
    last = str(len(net) - 1)
    out = net(torch.zeros(1, 3, 24, 24))
    units = [(y, x) for y in range(out.shape[2]) for x in range(out.shape[3])]
    boxes = receptive_fields(net, last, units, input_size=24, batch_size=64)
    assert boxes == [analytic_box(layers, y, x, (24, 24)) for y, x in units]
    geometry = field_geometry(net, last, input_size=24)
    assert (geometry.size[0], geometry.stride[0], geometry.offset[0]) == analytic(layers)
    assert [geometry.box(y, x) for y, x in units] == boxes


def test_max_pool_spreads_over_its_whole_window() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3),
                        nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
    layers = [(3, 1, 0, 1), (2, 2, 0, 1), (3, 1, 0, 1), (3, 2, 1, 1)]
    box = receptive_field(net, "5", (1, 3, 3), input_size=32)
    assert box == analytic_box(layers, 3, 3, (32, 32))
    assert box.height == analytic(layers)[0] == 12


def test_residual_field_is_the_wider_branch() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 5, padding=2)
            self.out = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.a(x)) + self.b(x) + x)

    box = receptive_field(Residual(), "out", (0, 6, 6), input_size=16)
    assert box == Box(4, 4, 9, 9)


def lite0_analytic(block: int) -> tuple[int, int, int]:
    """Field of ``_blocks.<block>`` from the stem and the depthwise kernels (1x1 convs add nothing)."""
    layers: list[Layer] = [(3, 2, 1, 1)]  # stem
    for repeats, kernel, stride, _expand, _cout in LITE0_STAGES:
        for i in range(repeats):
            layers.append((kernel, stride if i == 0 else 1, kernel // 2, 1))
    return analytic(layers[: block + 2])


def test_efficientnet_lite0_block3_field() -> None:
    torch.manual_seed(0)
    net = EfficientNetLite0().train()  # the probe must switch to eval itself
    size, stride, offset = lite0_analytic(3)
    assert (size, stride, offset) == (35, 8, -17)
    box = receptive_field(net, "_blocks.3", (5, 4, 4), input_size=64)
    assert box == Box(offset + 4 * stride, offset + 4 * stride, offset + 4 * stride + size,
                      offset + 4 * stride + size)
    geometry = field_geometry(net, "_blocks.3", input_size=64)
    assert (geometry.size, geometry.stride, geometry.offset) == ((35, 35), (8, 8), (-17, -17))
    assert net.training


def test_pretrained_lite0_field_and_model_untouched(lite0: Model) -> None:
    size, stride, offset = lite0_analytic(3)
    box = receptive_field(lite0, "_blocks.3", (None, 3, 3), input_size=(64, 48))
    assert box == Box(offset + 3 * stride, offset + 3 * stride, offset + 3 * stride + size,
                      offset + 3 * stride + size)
    assert all(p.grad is None for p in lite0.parameters())


def test_field_larger_than_the_input_is_measured_on_a_larger_probe() -> None:
    layers: list[Layer] = [(5, 1, 2, 1)] * 4  # size 17, stride 1, offset -8
    net = Model(chain(layers), preprocess=Preprocess(input_size=(8, 8)))
    geometry = field_geometry(net, "7")
    assert geometry.exact and geometry.input_size == (8, 8)
    assert (geometry.size, geometry.stride, geometry.offset) == ((17, 17), (1, 1), (-8, -8))
    assert geometry.box(0, 7) == Box(0, 0, 8, 8) == receptive_field(net, "7", (0, 7))
    small = field_geometry(net, "7", max_side=8)
    assert not small.exact and small.box(2, 2) == Box(0, 0, 8, 8)


def test_channel_choice_and_batching_do_not_change_boxes() -> None:
    net = chain(CHAINS["3x3 s2 then 3x3"])
    units = [(0, 0, 0), (None, 5, 2), (3, 11, 11), (2, 6, 7)]
    assert receptive_fields(net, "3", units, input_size=24, batch_size=3) == [
        receptive_field(net, "3", u, input_size=24) for u in units
    ]
    assert receptive_field(net, "3", (5, 2), input_size=24) == receptive_fields(
        net, "3", [(1, 5, 2)], input_size=24)[0]


def test_box_slices_crop_the_field() -> None:
    box = Box(2, 3, 7, 5)
    assert torch.zeros(1, 3, 10, 10)[(..., *box.slices)].shape == (1, 3, 5, 2)
    assert (box.height, box.width) == (5, 2)


def test_bad_units_and_layers_are_refused() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(BadArgument, match="outside"):
        receptive_field(net, "0", (0, 6, 0), input_size=8)
    with pytest.raises(BadArgument, match="outside"):
        receptive_field(net, "0", (4, 0, 0), input_size=8)
    with pytest.raises(BadArgument, match=r"\(y, x\)"):
        receptive_field(net, "0", (1,), input_size=8)
    with pytest.raises(BadLayer, match="spatial"):
        receptive_field(net, "2", (0, 0), input_size=8)
    with pytest.raises(BadLayer, match="did you mean"):
        receptive_field(net, "00", (0, 0), input_size=8)
    with pytest.raises(BadArgument, match="input_size"):
        receptive_field(net, "0", (0, 0), input_size=(8, 8, 8))


def test_unreached_layer_is_refused() -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    with pytest.raises(BadLayer, match="not reached"):
        receptive_field(Skips(), "unused", (0, 0), input_size=8)
