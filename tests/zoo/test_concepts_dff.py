"""Concept discovery against pytorch-grad-cam's Deep Feature Factorization (Collins et al. 2018):
on the same activations of a torchvision ResNet-18 (random weights) over five sample photos,
convscope.s NMF reaches the same reconstruction error (to 1e-4) or a lower one at the same rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff
from torchvision.models import resnet18

import convscope
from convscope.methods.concepts.discovery import discover, layer_activations

pytestmark = pytest.mark.usefixtures("one_thread")

PHOTOS = ("cat", "coffee", "astronaut", "rocket", "motorcycle")


@pytest.fixture(scope="module")
def activations() -> torch.Tensor:
    torch.manual_seed(0)
    model = convscope.load_model(resnet18().eval())
    x = model.preprocess([convscope.load_image(f"sample:{name}") for name in PHOTOS])
    return layer_activations(model, x, "layer4").acts


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")
@pytest.mark.parametrize("k", [3, 5, 8])
def test_reconstruction_error_at_most_dffs(activations: torch.Tensor, k: int) -> None:
    acts = activations.numpy().copy()
    concepts, explanations = dff(acts.copy(), n_components=k)  # (C, k), (N, k, h, w)
    matrix = acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1)  # DFF's (C, N*h*w)
    offset = matrix.min(axis=1, keepdims=True)  # DFF factorizes A - min per channel
    theirs = np.linalg.norm(matrix - offset - (concepts - offset) @
                            explanations.transpose(1, 0, 2, 3).reshape(k, -1))
    shifted = torch.from_numpy(acts - offset.reshape(1, -1, 1, 1))
    ours = discover(type("A", (), {"acts": shifted, "layer": "layer4"})(), k)  # type: ignore[arg-type]
    direct = float((shifted - torch.einsum("nkhw,kc->nchw", ours.maps, ours.bases)).norm())
    assert direct == pytest.approx(ours.factorization.error, rel=1e-4)
    assert direct <= theirs * (1 + 1e-4), (direct, theirs)
