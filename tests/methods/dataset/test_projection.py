"""Dataset maps: t-SNE of digits_cnn's penultimate layer separates the ten digits (acceptance),
PCA equals scikit-learn's, seeded t-SNE/UMAP are reproducible, kNN accuracy equals a reference."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from convscope.data.datasets import load_mnist5k
from convscope.errors import BadArgument, MissingDependency
from convscope.methods.dataset.projection import embed, knn_accuracy, project
from convscope.model import load_model


@pytest.fixture(scope="session")
def digit_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """(5000, 64) GAP outputs of digits_cnn (the input of its one linear layer), (5000,) labels."""
    torch.set_num_threads(2)
    model = load_model("digits_cnn")
    images, labels = load_mnist5k()
    x = model.preprocess(images)
    emb = embed(model, x, "flatten", batch_size=1000)
    with torch.no_grad():  # it is the penultimate layer: the linear head on it gives the logits
        assert torch.allclose(model.net.fc(emb[:100]), model(x[:100]), atol=1e-5)
    return emb, labels


def test_tsne_map_separates_the_ten_digits(digit_embeddings) -> None:
    emb, labels = digit_embeddings
    # a shortened schedule (100 exaggerated + 150 normal iterations) keeps the test fast
    coords = project(emb, "tsne", seed=0, n_iter=150, early_exaggeration_iter=100)
    assert coords.shape == (5000, 2) and coords.dtype == torch.float32
    accuracy = knn_accuracy(coords, labels, k=5)
    assert accuracy >= 0.90, accuracy
    # the map did work: raw pixels projected with PCA keep the classes much less well
    pixels = load_mnist5k()[0].flatten(1)
    assert knn_accuracy(project(pixels, "pca"), labels) < accuracy - 0.2


def test_pca_matches_scikit_learn() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=gen) @ torch.randn(12, 12, generator=gen) + 3
    for dims in (2, 3):
        ours = project(x, "pca", dims=dims)
        ref = PCA(n_components=dims, svd_solver="full").fit_transform(x.double().numpy())
        assert ours.shape == (200, dims) and ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)
    assert torch.equal(project(x, "pca"), project(x, "pca"))


def test_tsne_and_umap_are_seeded(digit_embeddings) -> None:
    emb = digit_embeddings[0][::25]  # 200 points, 20 per digit
    a = project(emb, "tsne", seed=3, n_iter=100, early_exaggeration_iter=50)
    assert torch.equal(a, project(emb, "tsne", seed=3, n_iter=100, early_exaggeration_iter=50))
    assert project(emb, "tsne", dims=3, seed=3, n_iter=50, early_exaggeration_iter=50).shape == (200, 3)
    u = project(emb, "umap", seed=1, n_epochs=100)
    assert u.shape == (200, 2) and torch.isfinite(u).all()
    assert torch.equal(u, project(emb, "umap", seed=1, n_epochs=100))
    assert project(emb, "umap", dims=3, seed=1, n_epochs=50).shape == (200, 3)
    assert knn_accuracy(u, digit_embeddings[1][::25]) > 0.8


def test_knn_accuracy_matches_a_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    coords = torch.randn(300, 2, generator=gen)
    labels = (coords[:, 0] + 0.7 * torch.randn(300, generator=gen) > 0).long()  # 2 classes, noisy
    k = 5  # odd k with two classes: no ties, so any correct implementation agrees exactly
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords.numpy()).kneighbors(coords.numpy())
    votes = labels.numpy()[idx[:, 1:]]  # drop each point itself
    expected = float(((votes.sum(1) > k / 2).astype(int) == labels.numpy()).mean())
    assert knn_accuracy(coords, labels, k=k, chunk=64) == pytest.approx(expected)
    assert knn_accuracy(torch.arange(10.0)[:, None], torch.tensor([0] * 5 + [1] * 5), k=1) == 1.0


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # makes `import openTSNE` fail
    monkeypatch.setitem(sys.modules, "umap", None)
    x = torch.randn(20, 4)
    for method in ("tsne", "umap"):
        with pytest.raises(MissingDependency, match=r"pip install convscope\[maps\]"):
            project(x, method)
    assert project(x, "pca").shape == (20, 2)  # PCA needs nothing optional


def test_refusals() -> None:
    x = torch.randn(20, 4)
    with pytest.raises(BadArgument, match="use one of"):
        project(x, "mds")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="2-D or 3-D"):
        project(x, "pca", dims=4)  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="NaN"):
        project(torch.full((20, 4), float("nan")), "pca")
    with pytest.raises(BadArgument, match="no options"):
        project(x, "pca", perplexity=5)
    with pytest.raises(BadArgument, match="does not take"):
        project(x, "tsne", colour="red")
    with pytest.raises(BadArgument):
        knn_accuracy(x[:, :2], torch.zeros(20, dtype=torch.long), k=20)
