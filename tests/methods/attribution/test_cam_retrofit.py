"""CAM retrofit: a GAP + linear head fitted on a frozen model, which comes out untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from convscope.data import load_labelled_folder
from convscope.errors import BadArgument, BadModel
from convscope.methods.attribution.cam import CAM, GradCAM
from convscope.methods.attribution.cam_retrofit import fit_cam_head
from convscope.model import Model, Preprocess

COLOURS = {"zero": (230, 30, 30), "one": (30, 200, 30), "two": (30, 30, 230)}


class FlattenNet(nn.Module):
    """conv-relu-conv-relu -> flatten -> linear: a classifier CAM cannot explain as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 8 * 8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).flatten(1))


def _square_image(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 24) -> np.ndarray:
    img = np.full((size, size, 3), 128, np.uint8)
    top, left = rng.integers(0, size - 8, 2)
    img[top:top + 8, left:left + 8] = colour
    return img


@pytest.fixture
def squares(tmp_path: Path) -> Path:
    """3 classes x 6 coloured-square images on grey, one subfolder per class."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (tmp_path / name).mkdir()
        for i in range(6):
            Image.fromarray(_square_image(colour, rng)).save(tmp_path / name / f"{i}.png")
    return tmp_path


def _labelled(folder: Path) -> tuple[list[Tensor], Tensor, list[str]]:
    images, labels, classes, _paths = load_labelled_folder(folder)
    return images, labels, classes


def _snapshot(model: Model) -> tuple[dict[str, Tensor], list[bool], list[bool]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return (state, [m.training for m in model.net.modules()],
            [p.requires_grad for p in model.parameters()])


def _assert_untouched(model: Model, snapshot: tuple[dict[str, Tensor], list[bool], list[bool]]) -> None:
    state, training, grad_flags = snapshot
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.net.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grad_flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


def test_retrofit_a_gap_model_from_a_folder(tiny: Model, squares: Path) -> None:
    before = _snapshot(tiny)
    calls: list[tuple[int, int]] = []
    result = fit_cam_head(tiny, *_labelled(squares), layer="relu2", holdout=0.34, steps=150,
                          progress=lambda done, total: calls.append((done, total)))
    _assert_untouched(tiny, before)
    assert result.classes == ["one", "two", "zero"] and result.source_layer == "relu2"
    assert (result.n_train, result.n_test) == (12, 6)
    assert result.accuracy >= 0.8  # colour is linearly readable from pooled features
    assert result.original_accuracy is not None  # folder names are labels of the tiny model
    assert 0.0 <= result.original_accuracy <= 1.0
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] == 1 + 150


def test_retrofitted_model_is_cam_ready(tiny: Model, squares: Path) -> None:
    cam_model = fit_cam_head(tiny, *_labelled(squares), layer="relu2", steps=20).model
    before = _snapshot(tiny)
    x = cam_model.preprocess(torch.rand(2, 3, 16, 16))
    cam = CAM(cam_model)
    assert cam.layer == "features"  # "auto" finds the pooled map of the new model
    maps = cam(x, [0, 2])
    assert maps.shape == (2, 1, 8, 8)
    torch.testing.assert_close(GradCAM(cam_model)(x, [0, 2]) * 64, maps, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # the head is GAP + linear on the trunk's relu2
        net = tiny.net
        acts = net.relu2(net.conv2(net.relu1(net.conv1(x))))
        expected = cam_model.net.fc(acts.mean((2, 3)))
        torch.testing.assert_close(cam_model(x), expected)
    _assert_untouched(tiny, before)


def test_the_way_out_for_a_model_without_gap(squares: Path) -> None:
    torch.manual_seed(0)
    model = Model(FlattenNet().eval(), preprocess=Preprocess(input_size=(16, 16)),
                  labels=["a", "b", "c"])
    x = model.preprocess(torch.rand(1, 3, 16, 16))
    with pytest.raises(BadModel, match="retrofit_cam"):
        CAM(model)(x, 0)
    before = _snapshot(model)
    result = fit_cam_head(model, *_labelled(squares), steps=100)  # auto: relu2, in place: cloned
    _assert_untouched(model, before)
    assert result.source_layer == "relu2"
    assert result.original_accuracy is None  # "zero", "one", "two" are not its labels
    assert CAM(result.model)(x, "zero").shape == (1, 1, 8, 8)


def test_retrofit_on_a_tensor_batch(tiny: Model) -> None:
    rng = np.random.default_rng(1)
    images = torch.stack([torch.from_numpy(_square_image(c, rng)).permute(2, 0, 1).float() / 255
                          for c in COLOURS.values() for _ in range(4)])
    labels = torch.arange(3).repeat_interleave(4)
    result = fit_cam_head(tiny, images, labels, ["zero", "one", "two"], layer="relu2",
                          batch_size=5, steps=50)
    assert (result.n_train, result.n_test) == (9, 3)
    assert result.model.labels == ["zero", "one", "two"]


def test_bad_inputs(tiny: Model) -> None:
    images = torch.rand(4, 3, 16, 16)
    with pytest.raises(BadArgument, match="at least 2"):
        fit_cam_head(tiny, images, torch.tensor([0, 0, 0, 1]), ["a", "b"])
    with pytest.raises(BadArgument, match="holdout"):
        fit_cam_head(tiny, images, torch.tensor([0, 0, 1, 1]), ["a", "b"], holdout=1.0)
    with pytest.raises(BadArgument, match="must index"):
        fit_cam_head(tiny, images, torch.tensor([0, 0, 1, 2]), ["a", "b"])
    with pytest.raises(BadArgument, match="labels of shape"):
        fit_cam_head(tiny, images, torch.tensor([0, 1]), ["a", "b"])


def test_api_retrofit_from_folder(tiny: Model, squares: Path) -> None:
    from convscope.tasks.retrofit import retrofit_cam as api_retrofit

    calls: list[tuple[int, int]] = []
    result = api_retrofit(tiny, squares, layer="relu2", steps=20,
                          progress=lambda d, t: calls.append((d, t)))
    assert result.classes == sorted(p.name for p in squares.iterdir() if p.is_dir())
    assert calls and calls[-1][0] == calls[-1][1]
