"""The inside views on every zoo architecture, at its last spatial stage: feature maps, activation
masks, filters, feature visualization (a few steps) and the dataset scan and embedding of a few
images. Each leaves the model unharmed and gives finite, non-empty results that agree with a
plain forward pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor, nn

from convscope import visualize
from convscope.methods.dataset import embed, scan
from convscope.methods.features import activation_mask, channel, feature_maps, filter_tiles, logit
from convscope.model import Model, forward_until, guarded
from tests.model_safety import assert_unharmed, snapshot
from tests.zoo.conftest import Arch, finite_nonzero


@contextmanager
def unharmed(model: Model) -> Iterator[None]:
    before = snapshot(model)
    yield
    assert_unharmed(model, before)


def stage(model: Model, x: Tensor, layer: str) -> Tensor:
    with guarded(model), torch.no_grad():
        return forward_until(model, x, layer)[layer]


def test_feature_maps_and_activation_mask(zoo_model: Model, zoo_arch: Arch, zoo_inputs: Tensor) -> None:
    with unharmed(zoo_model):
        maps = feature_maps(zoo_model, zoo_inputs, zoo_arch.layer, sort="max", top=4)
    acts = stage(zoo_model, zoo_inputs, zoo_arch.layer)
    assert maps.maps.shape == (2, 4, *acts.shape[-2:])
    torch.testing.assert_close(maps.maps, acts[:, maps.channels], rtol=0, atol=0)
    finite_nonzero(maps.maps, f"feature maps of {zoo_arch.name}")
    strongest = int(maps.channels[0])
    with unharmed(zoo_model):
        mask = activation_mask(zoo_model, zoo_inputs, zoo_arch.layer, strongest, quantile=0.9)
    assert mask.mask.shape == (2, 1, *zoo_inputs.shape[-2:]) and mask.mask.dtype == torch.bool
    varies = mask.raw.flatten(1).amax(1) > mask.raw.flatten(1).amin(1)  # else dead in that image
    assert varies.any() and (mask.mask.flatten(1).any(1) == varies).all() and not mask.mask.all()
    assert torch.isfinite(mask.activation).all()


def test_filters_of_the_first_and_a_deep_convolution(zoo_model: Model, zoo_arch: Arch) -> None:
    convs = [n for n, m in zoo_model.net.named_modules()  # 1x1 filters are single pixels
             if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
    for layer in (None, convs[len(convs) // 2]):
        with unharmed(zoo_model):
            tiles = filter_tiles(zoo_model, layer, max_filters=8)
        finite_nonzero(tiles.tiles, f"filters of {zoo_arch.name} {tiles.layer}")


def test_visualize_a_channel_and_a_logit(zoo_model: Model, zoo_arch: Arch) -> None:
    for objective in (channel(zoo_arch.layer, 0), logit(1)):
        with unharmed(zoo_model):
            result = visualize(zoo_model, objective, steps=3)
        assert result.images.shape == (1, 3, zoo_arch.side, zoo_arch.side)
        finite_nonzero(result.images, f"visualize {objective} on {zoo_arch.name}")
        assert torch.isfinite(result.values).all()


def test_scan_and_embed_agree_with_the_forward(zoo_model: Model, zoo_arch: Arch, zoo_inputs: Tensor) -> None:
    images = torch.cat([zoo_inputs, zoo_inputs.flip(-1)])  # four images, scanned two at a time
    with unharmed(zoo_model):
        result = scan(zoo_model, images, [zoo_arch.layer], k=2, batch_size=2)
        embedded = embed(zoo_model, images, zoo_arch.layer, batch_size=3)
    pooled = stage(zoo_model, images, zoo_arch.layer).flatten(2).mean(2)
    # equal up to float32 rounding: other batch sizes, and the scan's fast path folds batch norms
    scale = float(pooled.abs().max())
    torch.testing.assert_close(embedded, pooled, rtol=1e-3, atol=1e-4 * scale)
    torch.testing.assert_close(result.embeddings[zoo_arch.layer], pooled, rtol=1e-3, atol=1e-4 * scale)
    finite_nonzero(embedded, f"embeddings of {zoo_arch.name}")
    with guarded(zoo_model), torch.no_grad():
        assert result.predictions.tolist() == zoo_model(images).argmax(1).tolist()


@pytest.mark.parametrize("view", ["feature_maps", "embed"])
def test_inside_views_on_the_auto_layer(zoo_model: Model, zoo_arch: Arch, zoo_inputs: Tensor,
                                        view: str) -> None:
    with unharmed(zoo_model):
        out = (feature_maps(zoo_model, zoo_inputs, "auto").maps if view == "feature_maps"
               else embed(zoo_model, zoo_inputs, "auto"))
    finite_nonzero(out, f"{view} on {zoo_arch.name}'s auto layer")
