"""Fixtures shared by the attribution tests."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from convscope.data import load_image
from convscope.model import Model


@pytest.fixture(scope="session")
def two_objects(lite0: Model) -> Tensor:
    """(1, 3, 224, 224) model input of ``sample:cat_and_coffee``: a cat (285) and an espresso
    (967) side by side, both in the model's top 5, so a map must move with the target."""
    x = lite0.preprocess(load_image("sample:cat_and_coffee"))
    with torch.no_grad():
        top = lite0(x)[0].topk(5).indices.tolist()
    assert 285 in top and 967 in top, f"the model should see both objects, top-5: {top}"
    return x
