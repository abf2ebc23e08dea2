"""Named samples: all load offline as (3, H, W) RGB, and unknown names get a suggestion."""

from __future__ import annotations

import socket

import pytest
import torch

from convscope.data import SAMPLES, list_samples, load_image, load_sample
from convscope.errors import BadImage


class _NoFetch:
    """Stands in for skimage's pooch fetcher: any download attempt fails the test."""

    abspath = "/nonexistent-skimage-cache"

    def fetch(self, name: str) -> str:
        raise AssertionError(f"sample needed a download: {name}")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage.data import _fetchers

    def no_network(*args: object, **kw: object) -> None:
        raise AssertionError("network access while loading a sample")

    monkeypatch.setattr(_fetchers, "_image_fetcher", _NoFetch())
    monkeypatch.setattr(socket.socket, "connect", no_network)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_loads_offline(name: str, offline: None) -> None:
    t = load_sample(name)
    assert t.dtype == torch.float32 and t.ndim == 3 and t.shape[0] == 3
    assert min(t.shape[1:]) >= 200
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0 and float(t.std()) > 0.05


def test_sample_prefix_and_aliases() -> None:
    cat = load_image("sample:cat")
    assert cat.shape == (3, 300, 451)
    assert torch.equal(load_image("sample:Chelsea"), cat)
    assert torch.equal(load_sample(" CAT "), cat)


@pytest.mark.parametrize("name", ["grass", "gravel", "brick", "horse"])
def test_gray_samples_are_three_equal_channels(name: str) -> None:
    t = load_sample(name)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_horse_is_binary_black_on_white() -> None:
    t = load_sample("horse")
    assert set(t.unique().tolist()) == {0.0, 1.0}
    assert float(t[:, 0, 0].min()) == 1.0  # white background corner


def test_list_samples() -> None:
    listing = list_samples()
    assert set(listing) == set(SAMPLES)
    assert all(isinstance(v, str) and "\n" not in v for v in listing.values())
    assert "285" in listing["cat"] and "Egyptian cat" in listing["cat"]
    assert "967" in listing["coffee"] and "espresso" in listing["coffee"]


def test_unknown_sample_suggests() -> None:
    with pytest.raises(BadImage) as info:
        load_image("sample:cta")
    msg = str(info.value)
    assert "'cta'" in msg and "did you mean sample:cat?" in msg and "coffee" in msg
    with pytest.raises(BadImage, match="available: astronaut"):
        load_sample("zebra-crossing")
