"""digit_scenes: deterministic scenes whose boxes and masks are the truth of what was pasted, from
disjoint MNIST digits for training and held-out scenes."""

from __future__ import annotations

import pytest
import torch

from convscope.data.datasets import Item, load_mnist5k
from convscope.data.digit_scenes import BACKGROUND, CLASS_NAMES, GAP, INK, MAX_DIGITS, DigitScenes, make_scene
from convscope.errors import BadArgument
from convscope.model.digits_cnn import heldout_split


def test_same_seed_same_scenes_other_seed_other_scenes() -> None:
    for index in (0, 7):
        a, b = make_scene("heldout", index, seed=3), make_scene("heldout", index, seed=3)
        assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels) and a.digits == b.digits
    one, two = DigitScenes("train", n=6, seed=0), DigitScenes("train", n=6, seed=1)
    assert not torch.equal(one.batch(range(6)).images, two.batch(range(6)).images)
    # scene i does not depend on which scenes were made before it
    assert torch.equal(one.scene(5).image, DigitScenes("train", n=6).batch([5, 2]).images[0])


def test_boxes_and_masks_are_the_pasted_digits() -> None:
    _, labels = load_mnist5k()
    counts = set()
    for index in range(40):
        scene = make_scene("train", index)
        n = len(scene.labels)
        counts.add(n)
        assert scene.image.shape == (1, 128, 128) and scene.mask.shape == (128, 128)
        assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == torch.long
        assert scene.labels.tolist() == labels[list(scene.digits)].tolist()
        inked = scene.image[0] >= INK  # only ink is this bright, and every ink pixel is labelled
        assert not (inked & (scene.mask == BACKGROUND)).any()
        assert (scene.image[0][scene.mask != BACKGROUND] > 0).all()
        owner = torch.full((128, 128), -1)
        pasted = zip(scene.boxes.tolist(), scene.labels.tolist())
        for k, ((top, left, bottom, right), label) in enumerate(pasted):
            assert 0 <= top < bottom <= 128 and 0 <= left < right <= 128
            inside = scene.mask[top:bottom, left:right] == label
            # tight: the box's first and last rows and columns hold ink of its digit
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            grown = owner[max(top - GAP, 0):bottom + GAP, max(left - GAP, 0):right + GAP]
            assert (grown == -1).all(), "boxes keep a gap"
            owner[top:bottom, left:right] = k
        # a digit's mask lies inside a box of that digit
        for label in scene.mask.unique().tolist():
            if label != BACKGROUND:
                boxed = torch.zeros(128, 128, dtype=torch.bool)
                for (top, left, bottom, right), lab in zip(scene.boxes.tolist(), scene.labels.tolist()):
                    if lab == label:
                        boxed[top:bottom, left:right] = True
                assert not ((scene.mask == label) & ~boxed).any()
    assert counts <= set(range(1, MAX_DIGITS + 1)) and len(counts) >= 3


def test_heldout_scenes_use_only_digits_training_never_saw() -> None:
    train_idx, held_idx = heldout_split()
    train_digits = {d for i in range(60) for d in make_scene("train", i).digits}
    held_digits = {d for i in range(60) for d in make_scene("heldout", i).digits}
    assert train_digits <= set(train_idx.tolist()) and held_digits <= set(held_idx.tolist())
    assert not train_digits & held_digits


def test_dataset_interface() -> None:
    ds = DigitScenes("heldout", n=5, seed=2)
    assert len(ds) == 5 and ds.sources()[1] == "digit_scenes:heldout:1@2"
    item = ds.load(-1)
    assert isinstance(item, Item) and item.label is None and item.image.shape == (1, 128, 128)
    loaded = ds.load_batch([0, 4])
    assert isinstance(loaded.images, torch.Tensor) and loaded.images.shape == (2, 1, 128, 128)
    assert torch.equal(loaded.images[1], item.image)
    batch = ds.batch([1, 2])
    assert batch.masks.shape == (2, 128, 128) and len(batch.boxes) == len(batch.labels) == 2
    assert CLASS_NAMES[BACKGROUND] == "background" and CLASS_NAMES[:10] == [str(d) for d in range(10)]
    small = make_scene("train", 0, size=64)
    assert small.image.shape == (1, 64, 64) and int(small.boxes.max()) <= 64


@pytest.mark.parametrize("kwargs", [{"split": "test"}, {"n": 0}, {"size": 20}])
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(BadArgument, match="digit_scenes"):
        DigitScenes(**kwargs)
