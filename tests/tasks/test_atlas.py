"""Images behind an atlas: reloaded from the dataset while it is unchanged, else its thumbnails."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from convscope.data import load_image
from convscope.model import Model, Preprocess
from convscope.tasks.atlas import atlas_images
from convscope.tasks.scan import scan_dataset


def test_atlas_images_reload_the_folder_then_fall_back_to_thumbnails(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = torch.randint(0, 256, (12, 12, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, 2)).eval()
    model = Model(net, preprocess=Preprocess((12, 12)), labels=["a", "b"])
    atlas = scan_dataset(model, folder, tmp_path / "atlas", layers="0", k=2)
    expected = model.resize([load_image(folder / "2.png"), load_image(folder / "0.png")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dataset is there: no fallback
        assert torch.equal(atlas_images(atlas, model, [2, 0]), expected)
    (folder / "0.png").write_bytes(b"not a png any more")
    with pytest.warns(UserWarning, match="using thumbnails"):
        thumbs = atlas_images(atlas, model, [2, 0])
    assert thumbs.shape == (2, 3, 12, 12)
    assert torch.allclose(thumbs, expected, atol=0.5 / 255 + 1e-6)  # 12 px thumbnails: uint8 only
