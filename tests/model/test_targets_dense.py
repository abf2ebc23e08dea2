"""Target objects (Region, MultiLabel, Similarity): exact on toy models, pointing at the cause on
the shipped ``digits_segmenter`` on held-out ``digit_scenes``, refused in one line when wrong."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import convscope
from convscope.data.digit_scenes import DigitScenes
from convscope.errors import BadTarget
from convscope.model.digits_dense import SCENE_MEAN, SCENE_SIZE, SCENE_STD
from convscope.model.targets import select
from convscope.model.wrapped import Model, Preprocess
from convscope.types import MultiLabel, Region, Similarity


class PixelClasses(nn.Module):
    """(B, 1, 16, 16) -> (B, 3, 16, 16): class c at a pixel depends only on that pixel."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": torch.cat([x, 2 * x, x * x], 1)}


def toy() -> Model:
    return Model(PixelClasses(), preprocess=Preprocess((16, 16), (0.0,), (1.0,), channels=1),
                 labels=["a", "b", "c"], name="toy")


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients"])
def test_region_maps_have_no_mass_outside_the_region(method: str) -> None:
    x = torch.rand(2, 1, 16, 16) + 0.1
    result = convscope.explain(toy(), x, method=method, target=Region("b", box=(3, 4, 9, 12)))
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:12, 3:9] = True
    maps = result.values[:, 0]
    assert maps[:, ~inside].abs().max() == 0
    assert (maps[:, inside].abs() > 0).all()
    assert result.explained is not None
    assert "class 1 'b', mean over 48 px of box (3, 4, 9, 12)" in result.explained[0]
    torch.testing.assert_close(result.scores, (2 * x[:, 0, 4:12, 3:9]).mean((1, 2)))


def test_select_region_sum_mean_and_coarse_output() -> None:
    dense = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 0:2] = True
    part = dense[:, 2, 1:3, 0:2]
    torch.testing.assert_close(select(dense, Region(2, mask=mask, reduce="sum")), part.sum((1, 2)))
    torch.testing.assert_close(select({"out": dense}, Region(2, mask=mask)), part.mean((1, 2)))
    # an output at half the input's resolution: the 8x8 mask weighs the 4x4 cells it covers
    fine = torch.zeros(8, 8, dtype=torch.bool)
    fine[2:6, 0:4] = True
    torch.testing.assert_close(select(dense, Region(2, mask=fine)), dense[:, 2, 1:3, 0:2].mean((1, 2)))


def test_multilabel_and_similarity_scores() -> None:
    logits = torch.randn(3, 5, requires_grad=True)
    torch.testing.assert_close(select(logits, MultiLabel((1, 4))), logits[:, 1] + logits[:, 4])
    torch.testing.assert_close(select(logits, MultiLabel((1, 4), probability=True, reduce="mean")),
                               logits[:, [1, 4]].sigmoid().mean(1))
    ref = torch.randn(2, 5)
    want = torch.stack([torch.nn.functional.cosine_similarity(logits, r[None]) for r in ref]).mean(0)
    torch.testing.assert_close(select(logits, Similarity(ref)), want)


@pytest.mark.parametrize(("target", "words"), [
    (Region(1, box=(0, 0, 17, 5)), "not inside the 16x16 input"),
    (Region(1, mask=torch.ones(15, 16)), "does not match the 16x16 input"),
    (Region(7, box=(0, 0, 4, 4)), "out of range: the model has 3 classes"),
    (Region("zebra", box=(0, 0, 4, 4)), "not a class label"),
    (Region(1, mask=torch.zeros(16, 16)), "empty"),
])
def test_bad_regions_are_refused_in_one_line(target: Region, words: str) -> None:
    with pytest.raises(BadTarget, match=words) as err:
        convscope.explain(toy(), torch.rand(1, 1, 16, 16), method="saliency", target=target)
    assert "\n" not in str(err.value)


# --- the trained segmenter on held-out scenes -------------------------------------------------

SCENES = 30


@pytest.fixture(scope="module")
def segmenter() -> Model:
    return convscope.load_model("digits_segmenter")


def _peak(values: Tensor) -> tuple[int, int]:
    y, x = divmod(int(values.argmax()), values.shape[-1])
    return y, x


@pytest.mark.parametrize("method", ["gradcam", "gradient_x_input"])
def test_region_maps_point_at_the_asked_digit(segmenter: Model, method: str) -> None:
    """Pointing game: the map's maximum inside the asked digit's box, scenes with >= 2 digits.

    Grad-CAM weighs channels by their mean gradient over the whole map, so with two digits of
    the asked class in a scene it may point at the other one: the 90% floor holds for digits
    whose class is alone in their scene, and 85% for all."""
    scenes = DigitScenes("heldout", SCENES)
    hits, alone = [], []
    for i in range(SCENES):
        scene = scenes.scene(i)
        if len(scene.labels) < 2:
            continue
        for (top, left, bottom, right), label in zip(scene.boxes.tolist(), scene.labels.tolist()):
            mask = torch.zeros(SCENE_SIZE, SCENE_SIZE, dtype=torch.bool)
            mask[top:bottom, left:right] = scene.mask[top:bottom, left:right] == label
            result = convscope.explain(segmenter, scene.image[None], method=method,
                                       target=Region(label, mask=mask))
            values = result.values[0].sum(0)
            y, x = _peak(values)
            hits.append(top <= y < bottom and left <= x < right)
            if scene.labels.tolist().count(label) == 1:
                alone.append(hits[-1])
    print(f"{method} region pointing: {sum(hits)}/{len(hits)}; "
          f"class alone in its scene {sum(alone)}/{len(alone)}")
    assert len(alone) >= 30 and sum(alone) >= 0.9 * len(alone)
    assert sum(hits) >= 0.85 * len(hits)


class DigitPresence(nn.Module):
    """An embedding made of the shipped segmenter: for each digit 0-9, the mean over the scene of
    its softmax probability (a 10-d "which digits are here, how much" vector). Its maximum per
    class saturates (softmax near 1, no gradient) and points far worse (7/24)."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, x: Tensor) -> Tensor:
        return self.segmenter(x).softmax(1)[:, :10].mean((2, 3))


def _pairs(scenes: DigitScenes, count: int) -> list[tuple[int, int, int]]:
    """(i, j, digit): scenes i and j share exactly one digit, present once in each."""
    found = []
    labels = [scenes.scene(i).labels.tolist() for i in range(len(scenes))]
    for i in range(len(scenes)):
        for j in range(i + 1, len(scenes)):
            shared = set(labels[i]) & set(labels[j])
            if (len(shared) == 1 and len(labels[i]) >= 2 and len(labels[j]) >= 2
                    and all(labels[k].count(next(iter(shared))) == 1 for k in (i, j))):
                found.append((i, j, shared.pop()))
                if len(found) == count:
                    return found
    return found


def test_similarity_points_at_the_shared_digit_in_both(segmenter: Model) -> None:
    """Grad-CAM of the cosine to the other scene, in both directions: 19 of 24 maps peak on the
    shared digit (a floor of 75%; the other digits' own presence pulls the rest)."""
    method = "gradcam"
    embedder = Model(DigitPresence(segmenter.net), preprocess=Preprocess(
        (SCENE_SIZE, SCENE_SIZE), SCENE_MEAN, SCENE_STD, channels=1), name="digit_presence")
    scenes = DigitScenes("heldout", 40)
    hits = []
    for i, j, digit in _pairs(scenes, 12):
        for a, b in ((i, j), (j, i)):
            scene, other = scenes.scene(a), scenes.scene(b)
            result = convscope.explain(embedder, scene.image[None], method=method,
                                       target=Similarity(other.image, name=f"scene {b}"))
            y, x = _peak(result.values[0].sum(0))
            top, left, bottom, right = scene.boxes[scene.labels.tolist().index(digit)].tolist()
            hits.append(top <= y < bottom and left <= x < right)
            assert result.explained is not None
            assert result.explained[0].startswith(f"similarity to reference scene {b}: cos")
    print(f"{method} similarity pointing: {sum(hits)}/{len(hits)}")
    assert len(hits) >= 20 and sum(hits) >= 0.75 * len(hits)
