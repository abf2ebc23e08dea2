"""open_dataset: folders (bad files listed, loading them refused), labels, mnist5k, torch Datasets."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data.datasets import ImageDataset, Item, load_mnist5k, open_dataset
from convscope.errors import BadArgument, BadImage


def _img(path: Path, color: str = "red", mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (5, 4), color).save(path)
    return path


def test_unlabelled_folder_lists_bad_files_and_load_refuses_them(tmp_path: Path) -> None:
    _img(tmp_path / "b.png")
    _img(tmp_path / "a.jpg", "blue")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # header, no data
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    ds = open_dataset(tmp_path)
    names = [Path(s).name for s in ds.sources()]
    assert names == ["a.jpg", "b.png", "broken.png", "notes.txt"]  # sorted, hidden skipped
    assert len(ds) == 4 and ds.class_names is None
    item = ds.load(0)
    assert isinstance(item, Item) and item.label is None and item.source.endswith("a.jpg")
    assert item.image.shape == (3, 4, 5) and item.image.dtype == torch.float32
    assert torch.allclose(item.image[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=0.02)  # blue
    good, bad = 0, 0
    for i in range(len(ds)):
        try:
            ds.load(i)
            good += 1
        except BadImage:
            bad += 1
    assert (good, bad) == (2, 2)
    with pytest.raises(BadImage, match=r"notes\.txt"):
        ds.load(3)
    with pytest.raises(IndexError):
        ds.load(4)
    assert ds.load(-4).source == ds.sources()[0]


def test_subfolders_are_classes(tmp_path: Path) -> None:
    _img(tmp_path / "dog" / "1.png", "white")
    _img(tmp_path / "cat" / "2.png")
    _img(tmp_path / "cat" / "nested" / "3.png", "blue")
    (tmp_path / "cat" / "readme.md").write_text("x")
    _img(tmp_path / "stray.png")  # files beside class folders are not part of any class
    ds = open_dataset(str(tmp_path))
    assert ds.class_names == ["cat", "dog"]
    rel = [str(Path(s).relative_to(tmp_path)) for s in ds.sources()]
    assert rel == ["cat/2.png", "cat/nested/3.png", "cat/readme.md", "dog/1.png"]
    assert [ds.load(i).label for i in (0, 1, 3)] == [0, 0, 1]
    with pytest.raises(BadImage):
        ds.load(2)


def test_deterministic_order(tmp_path: Path) -> None:
    for name in ["z.png", "m.png", "a.png", "k.png"]:
        _img(tmp_path / name)
    assert open_dataset(tmp_path).sources() == open_dataset(tmp_path).sources()
    assert [Path(s).name for s in open_dataset(tmp_path).sources()] == ["a.png", "k.png", "m.png", "z.png"]


def test_mnist5k() -> None:
    ds = open_dataset("mnist5k")
    assert len(ds) == 5000 and ds.class_names == [str(d) for d in range(10)]
    item = ds.load(1234)
    assert item.image.shape == (1, 28, 28) and item.image.dtype == torch.float32
    assert item.image.min() >= 0.0 and item.image.max() <= 1.0 and item.image.max() > 0.9
    assert item.source == "mnist5k:1234" and item.label == 2  # the file is grouped by class
    images, labels = load_mnist5k()
    assert images.shape == (5000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [500] * 10
    assert torch.equal(images[1234], item.image)
    # a digit is bright strokes on black: the border is empty
    assert images[:, :, 0, :].max() < 0.1


class _Pairs(torch.utils.data.Dataset):
    classes: ClassVar[list[str]] = ["even", "odd"]

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((1, 6, 7), i / 4), torch.tensor(i % 2)


def test_torch_dataset_of_pairs() -> None:
    ds = open_dataset(_Pairs())
    assert isinstance(ds, ImageDataset) and len(ds) == 3 and ds.class_names == ["even", "odd"]
    assert ds.sources() == ["<_Pairs>:0", "<_Pairs>:1", "<_Pairs>:2"]
    item = ds.load(2)
    assert item.image.shape == (1, 6, 7) and item.label == 0 and item.source == "<_Pairs>:2"
    assert torch.allclose(item.image, torch.full((1, 6, 7), 0.5))


def test_iterables_of_images_pil_and_paths(tmp_path: Path) -> None:
    path = _img(tmp_path / "p.png")
    gray = Image.new("L", (3, 2), 255)
    elements = (x for x in [torch.rand(3, 8, 8), (np.zeros((4, 4), np.uint8), 3), gray, str(path)])
    ds = open_dataset(elements)
    assert len(ds) == 4 and ds.class_names is None
    assert ds.sources() == ["<iterable>:0", "<iterable>:1", "<iterable>:2", str(path)]
    assert ds.load(0).image.shape == (3, 8, 8)
    assert ds.load(1).image.shape == (1, 4, 4) and ds.load(1).label == 3
    assert ds.load(2).image.shape == (1, 2, 3) and ds.load(2).image.min() == 1.0
    assert ds.load(3).image.shape == (3, 4, 5)


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="not an existing folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(BadArgument):
        open_dataset(42)  # type: ignore[arg-type]
    with pytest.raises(BadImage, match="holds a dict"):
        open_dataset([{"x": 1}]).load(0)
    with pytest.raises(BadImage, match="<iterable>:0"):
        open_dataset([torch.full((3, 2, 2), 7.0)]).load(0)  # out of [0, 1]
    ds = open_dataset(_Pairs())
    assert open_dataset(ds) is ds


def test_load_batch_skips_bad_items_and_mnist5k_stacks(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    _img(tmp_path / "c.png", "blue")
    got = open_dataset(tmp_path).load_batch([2, 1, 0])
    assert got.indices == [2, 0] and got.labels == [None, None]
    assert [f[0] for f in got.failed] == [1] and "b.png" in got.failed[0][1]
    assert isinstance(got.images, list) and got.images[0].shape == (3, 4, 5)
    ds = open_dataset("mnist5k")
    batch = ds.load_batch([7, 4999, 0])
    assert isinstance(batch.images, torch.Tensor) and batch.images.shape == (3, 1, 28, 28)
    for row, i in enumerate([7, 4999, 0]):
        item = ds.load(i)
        assert torch.equal(batch.images[row], item.image) and batch.labels[row] == item.label
    assert batch.indices == [7, 4999, 0] and batch.failed == []
    assert ds.load_batch([-1]).indices == [4999]
    with pytest.raises(IndexError, match="5000"):
        ds.load_batch([3, 5000])
