"""Pictures of dataset analyses on the shipped digits model: ``python docs/dataset_pictures.py``.

* ``tsne_digits.png``: t-SNE (default schedule) of digits_cnn's penultimate layer (the 64-d
  global-average-pool output) on the 5,000 MNIST digits, coloured by true label, with thumbnails.
* ``digits_filters.png``: digits_cnn's first-layer 3x3 filters, through ``convscope filters``.

Uses the public API and CLI only, so the pictures show what a user gets. About two minutes on
two CPU cores (t-SNE dominates).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from convscope.cli.main import main as cli
from convscope.data.datasets import load_mnist5k
from convscope.methods.dataset.projection import embed, knn_accuracy, project
from convscope.model import load_model
from convscope.render import save_png
from convscope.render.plots import embedding_scatter

OUT = Path(__file__).parent / "images"


def tsne_digits() -> None:
    model = load_model("digits_cnn")
    images, labels = load_mnist5k()
    emb = embed(model, model.preprocess(images), "flatten", batch_size=500)
    start = time.perf_counter()
    coords = project(emb, "tsne", seed=0)
    seconds = time.perf_counter() - start
    accuracy = knn_accuracy(coords, labels, k=5)
    picture = embedding_scatter(
        coords, labels, class_names=model.labels, thumbnails=images, max_thumbnails=220,
        thumbnail_size=26, thumbnail_spacing=0.04, size=(1300, 1100), point_size=5,
        title=f"digits_cnn penultimate layer, 5,000 MNIST digits, t-SNE "
              f"(5-NN label accuracy in the map {accuracy:.1%})")
    save_png(picture, OUT / "tsne_digits.png")
    print(f"tsne_digits.png: t-SNE {seconds:.0f} s, 5-NN accuracy {accuracy:.4f}")


def digits_filters() -> None:
    code = cli(["filters", "--model", "digits_cnn", "--normalize", "symmetric",
                "--out", str(OUT / "digits_filters.png")])
    if code:
        raise SystemExit(f"convscope filters failed with exit code {code}")


def main() -> None:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    digits_filters()
    tsne_digits()


if __name__ == "__main__":
    main()
