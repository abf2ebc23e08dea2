"""Maps of a dataset: embeddings (N, D) -> coordinates (N, 2 or 3), and how well a map keeps classes.

Three projections, each seeded so the same embeddings give the same map:

* PCA: the top principal axes, computed here with an SVD in float64 (exact, on the input's
  device, no dependency). Axis signs follow scikit-learn's convention (the largest-magnitude
  loading of each axis is positive), so results match ``sklearn.decomposition.PCA``.
* t-SNE (van der Maaten & Hinton 2008) through openTSNE (Policar et al. 2024): perplexity-based
  affinities on approximate neighbours, PCA initialization, FFT-accelerated gradients for 2-D
  maps (Linderman et al. 2019) and Barnes-Hut for 3-D ones.
* UMAP (McInnes et al. 2018) through umap-learn; a fixed ``random_state`` makes it single-threaded
  and reproducible.

openTSNE and umap-learn are optional (``pip install convscope[maps]``), imported only when used.

:func:`knn_accuracy` scores a map: the leave-one-out k-nearest-neighbour label accuracy in the
map's coordinates (the fraction of points whose k nearest other points vote for their label),
a standard check that a 2-D map kept the class structure of the embedding.

Shapes: embeddings (N, D) float, labels (N,) long; coordinates (N, dims) float32 on the input's
device. Libraries work on CPU numpy copies internally; nothing numpy crosses the public API.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import BadArgument, MissingDependency
from ...model import forward_until, resolve_layer
from ...model.capture import layer_map
from ...types import ProgressFn

ProjectionMethod = Literal["pca", "tsne", "umap"]
PROJECTIONS: tuple[str, ...] = ("pca", "tsne", "umap")
_PACKAGES = {"tsne": ("openTSNE", "openTSNE"), "umap": ("umap", "umap-learn")}


def project(
    embeddings: Tensor,
    method: ProjectionMethod = "tsne",
    *,
    dims: Literal[2, 3] = 2,
    seed: int = 0,
    **options: Any,
) -> Tensor:
    """Coordinates (N, dims) for embeddings (N, D): ``"pca"``, ``"tsne"`` or ``"umap"``.

    ``options`` go to the library's estimator (t-SNE: ``perplexity=30``, ``n_iter=500``,
    ``n_jobs=1``...; UMAP: ``n_neighbors=15``, ``min_dist=0.1``, ``metric``...); an option the
    estimator does not take raises :class:`BadArgument`. PCA takes none.
    """
    if method not in PROJECTIONS:
        raise BadArgument(f"projection method {method!r}: use one of {', '.join(PROJECTIONS)}")
    if dims not in (2, 3):
        raise BadArgument(f"dims={dims}: maps are 2-D or 3-D")
    x = _check_embeddings(embeddings, dims)
    if method == "pca":
        if options:
            raise BadArgument(f"PCA takes no options; got {', '.join(sorted(options))}")
        return pca(x, dims).to(embeddings.device, torch.float32)
    data = x.detach().to("cpu", torch.float32).numpy()
    run = _tsne if method == "tsne" else _umap
    coords = run(data, dims, seed, options)
    return torch.as_tensor(np.asarray(coords), dtype=torch.float32).to(embeddings.device)


def pca(embeddings: Tensor, dims: int = 2) -> Tensor:
    """(N, D) -> (N, dims) scores on the top principal axes (float64 SVD, scikit-learn's signs)."""
    x = embeddings.detach().double()
    centred = x - x.mean(0, keepdim=True)
    u, s, vt = torch.linalg.svd(centred, full_matrices=False)
    vt = vt[:dims]
    rows = torch.arange(vt.shape[0], device=vt.device)
    signs = torch.sign(vt[rows, vt.abs().argmax(1)])
    signs[signs == 0] = 1
    return (u[:, :dims] * s[:dims]) * signs


def knn_accuracy(coords: Tensor, labels: Tensor, k: int = 5, *, chunk: int | None = None) -> float:
    """Leave-one-out kNN label accuracy of points ``coords`` (N, d) with ``labels`` (N,).

    Each point's ``k`` nearest other points vote (Euclidean distance); a tie goes to the class
    of the nearer voters. Memory is bounded by ``chunk`` rows of distances at a time (default:
    about 128 MB of float64 distances).
    """
    labels = torch.as_tensor(labels, device=coords.device).long()
    n = coords.shape[0]
    if coords.ndim != 2 or labels.shape != (n,):
        raise BadArgument(f"knn_accuracy: coords (N, d) and labels (N,); got {tuple(coords.shape)} "
                          f"and {tuple(labels.shape)}")
    if not 1 <= k < n:
        raise BadArgument(f"knn_accuracy: k={k} must be between 1 and N-1={n - 1}")
    pts = coords.detach().double()
    chunk = chunk or max(1, 2**24 // n)
    classes = int(labels.max()) + 1
    # weights 1 + tiny rank bonus: counts decide, nearer voters break ties
    weight = 1 + torch.linspace(1e-3, 0, k, dtype=torch.float64, device=pts.device)
    correct = 0
    for start in range(0, n, chunk):
        block = pts[start:start + chunk]
        dist = torch.cdist(block, pts)
        rows = torch.arange(block.shape[0], device=pts.device)
        dist[rows, rows + start] = float("inf")  # leave each point out of its own vote
        nearest = dist.topk(k, dim=1, largest=False).indices  # (b, k), nearest first
        votes = torch.zeros(block.shape[0], classes, dtype=torch.float64, device=pts.device)
        votes.scatter_add_(1, labels[nearest], weight.expand(block.shape[0], k))
        correct += int((votes.argmax(1) == labels[start:start + chunk]).sum())
    return correct / n


@torch.no_grad()
def embed(model: nn.Module, inputs: Tensor, layer: str, *, batch_size: int = 256,
          progress: ProgressFn | None = None) -> Tensor:
    """(N, D) embeddings of model inputs (N, C, H, W) at ``layer``: spatial maps (tokens and
    channels-last maps read as :func:`~convscope.model.capture.layer_map` reads them) are averaged.

    The network runs in batches only up to ``layer`` (eval mode, restored afterwards).
    """
    name = resolve_layer(model, layer)
    parts = []
    for start in range(0, inputs.shape[0], batch_size):
        batch = inputs[start:start + batch_size]
        act = forward_until(model, batch, name)[name]
        if act.ndim > 2:  # a map as every reader reads it (model/tokens.py), then averaged
            act = layer_map(model, name, act, batch.shape).flatten(2).mean(2)
        parts.append(act)
        if progress is not None:
            progress(min(start + batch_size, inputs.shape[0]), inputs.shape[0])
    return torch.cat(parts)


def _check_embeddings(embeddings: Tensor, dims: int) -> Tensor:
    if not isinstance(embeddings, Tensor):
        raise BadArgument(f"embeddings must be a torch tensor (N, D), not {type(embeddings).__name__}; "
                          "use torch.as_tensor(array)")
    if embeddings.ndim != 2 or embeddings.shape[0] < dims + 2:
        raise BadArgument(f"embeddings of shape {tuple(embeddings.shape)}: need (N, D) with N > {dims + 1}")
    if not torch.isfinite(embeddings).all():
        raise BadArgument("embeddings contain NaN or inf; check the layer and inputs")
    return embeddings


def _require(method: str) -> ModuleType:
    module, package = _PACKAGES[method]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(
            f"projection method {method!r} needs the optional package {package!r}; install it with "
            f"`pip install convscope[maps]` (or `pip install {package}`), or use method='pca'"
        ) from err


def _construct(cls: type, name: str, defaults: dict[str, Any], options: dict[str, Any]) -> Any:
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BadArgument(f"{name} does not take option(s) {', '.join(unknown)}")
    return cls(**{**defaults, **options})


def _tsne(data: Any, dims: int, seed: int, options: dict[str, Any]) -> Any:
    open_tsne = _require("tsne")
    perplexity = min(float(options.pop("perplexity", 30.0)), (len(data) - 1) / 3)
    defaults = {"n_components": dims, "perplexity": perplexity, "random_state": seed, "n_jobs": 1,
                "initialization": "pca", "verbose": False,
                "negative_gradient_method": "fft" if dims <= 2 else "bh"}
    estimator = _construct(open_tsne.TSNE, "t-SNE (openTSNE)", defaults, options)
    return estimator.fit(data)


def _umap(data: Any, dims: int, seed: int, options: dict[str, Any]) -> Any:
    umap = _require("umap")
    neighbours = min(int(options.pop("n_neighbors", 15)), len(data) - 1)
    defaults = {"n_components": dims, "n_neighbors": neighbours, "random_state": seed,
                "min_dist": 0.1, "n_jobs": 1, "verbose": False}
    estimator = _construct(umap.UMAP, "UMAP (umap-learn)", defaults, options)
    return estimator.fit_transform(data)
