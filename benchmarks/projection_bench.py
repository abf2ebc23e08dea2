"""Wall time of the dataset maps (PCA, t-SNE, UMAP) for 5,000 and 50,000 points.

    python -m benchmarks.projection_bench [--sizes 5000,50000] [--methods pca,tsne,umap] [--jobs 1]

Points: the 5,000 MNIST digits embedded by ``digits_cnn`` at its penultimate layer (64-d GAP
output). The 50,000-point set is those 5,000 embeddings plus 9 seeded noisy copies (Gaussian
noise of 10% of each dimension's standard deviation): real cluster structure at ten times the
size. Each cell is one run (these are long; noise from other processes is not averaged away),
with the default schedules (t-SNE: 250 exaggerated + 500 iterations, FFT gradients; UMAP: 200
epochs above 10,000 points, 500 below) and the 5-NN label accuracy of the map as a sanity check
that the timed run made a real map. ``--jobs`` is passed to openTSNE's ``n_jobs`` (UMAP with a
seed is single-threaded by design).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from convscope.data.datasets import load_mnist5k
from convscope.methods.dataset.projection import embed, knn_accuracy, project
from convscope.model import load_model


def points(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, 64) digit embeddings (noisy copies beyond 5,000) and their labels."""
    model = load_model("digits_cnn")
    images, labels = load_mnist5k()
    emb = embed(model, model.preprocess(images), "flatten", batch_size=500)
    gen = torch.Generator().manual_seed(0)
    copies = [emb]
    scale = 0.1 * emb.std(0, keepdim=True)
    while sum(len(c) for c in copies) < size:
        copies.append(emb + torch.randn(emb.shape, generator=gen) * scale)
    reps = len(copies)
    return torch.cat(copies)[:size], labels.repeat(reps)[:size]


def run(sizes: list[int], methods: list[str], jobs: int = 1) -> list[tuple[str, int, float, float]]:
    """Time each method at each size; prints a line per run and returns (method, size, s, acc)."""
    warnings.filterwarnings("ignore", category=UserWarning)  # umap's notes on n_jobs with a seed
    rows = []
    for size in sizes:
        emb, labels = points(size)
        for method in methods:
            options = {"n_jobs": jobs} if method == "tsne" else {}
            if method == "umap":
                # numba compiles umap's and pynndescent's kernels once per process: not timed
                project(emb[:300], "umap", seed=0, n_epochs=10, force_approximation_algorithm=True)
            start = time.perf_counter()
            coords = project(emb, method, seed=0, **options)
            seconds = time.perf_counter() - start
            accuracy = knn_accuracy(coords, labels, k=5)
            rows.append((method, size, seconds, accuracy))
            print(f"  {method:5s} {size:7d} points  {seconds:8.2f} s  5-NN accuracy {accuracy:.4f}",
                  flush=True)
    return rows


def projection_table(model: object, device: object) -> None:
    """PCA, t-SNE and UMAP on 5,000 and 50,000 points, for ``benchmarks.run`` (CPU libraries)."""
    print("\n== 2-D maps of digits_cnn embeddings (50,000 = the 5,000 plus 9 noisy copies)")
    run([5000, 50000], ["pca", "tsne", "umap"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--methods", default="pca,tsne,umap")
    parser.add_argument("--jobs", type=int, default=1, help="openTSNE n_jobs (default 1)")
    args = parser.parse_args()
    print(f"projection benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"openTSNE n_jobs={args.jobs}")
    rows = run([int(s) for s in args.sizes.split(",")], [m.strip() for m in args.methods.split(",")],
               args.jobs)
    print("\n| method | points | seconds | 5-NN accuracy in the map |\n|---|---:|---:|---:|")
    for method, size, seconds, accuracy in rows:
        print(f"| {method} | {size:,} | {seconds:.2f} | {accuracy:.4f} |")


if __name__ == "__main__":
    main()
