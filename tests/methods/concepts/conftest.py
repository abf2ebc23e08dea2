"""Shared inputs of the concept tests: digits of one class and digits_cnn's activations."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.data.datasets import load_mnist5k
from convscope.methods.concepts.discovery import layer_activations


@pytest.fixture(scope="session")
def digits_model() -> convscope.Model:
    return convscope.load_model("digits_cnn")


@pytest.fixture(scope="session")
def threes(digits_model: convscope.Model) -> torch.Tensor:
    """24 threes of MNIST (a seeded sample), as digits_cnn's input."""
    images, labels = load_mnist5k()
    pick = (labels == 3).nonzero()[:, 0]
    pick = pick[torch.randperm(len(pick), generator=torch.Generator().manual_seed(0))[:24]]
    return digits_model.preprocess(list(images[pick]))


@pytest.fixture(scope="session")
def digits_acts(digits_model: convscope.Model, threes: torch.Tensor) -> torch.Tensor:
    return layer_activations(digits_model, threes, "block4").acts
