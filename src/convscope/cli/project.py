"""``convscope project``: a 2-D map (t-SNE, UMAP or PCA) of a dataset's embeddings, as a PNG.

The embeddings come from an atlas written by ``convscope scan`` (``--atlas DIR``), or are
computed here in one pass over a dataset (``--dataset SPEC --model M --layer L``): spatial mean
of the layer's activation per image, with the model's predictions and small thumbnails. Images
that cannot be read (or were skipped by the scan) are left out and counted. The leave-one-out
kNN label accuracy in the map is printed when labels exist: how well the map keeps the classes.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import open_dataset
from ..errors import BadArgument, BadImage
from ..methods.dataset.projection import PROJECTIONS, knn_accuracy, project
from ..model import Model, capture, evaluating, resolve_layer
from ..render import save_png
from ..render.plots import embedding_scatter
from .common import add_model_options, model_from_args, print_json
from .options import parse_options
from .progress import progress_bar

THUMB = 32


@dataclass
class Points:
    """What a map is drawn from; rows of unreadable images are dropped before this."""

    embeddings: torch.Tensor  # (N, D)
    labels: np.ndarray  # (N,) -1 = none
    predictions: np.ndarray  # (N,) -1 = none
    thumbnails: np.ndarray  # (N, t, t, 3) uint8
    sources: list[str]
    class_names: list[str] | None
    layer: str
    skipped: int
    model_labels: list[str] | None = None
    """The model's class names: predictions index these, labels index ``class_names``."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("project", help="2-D map (t-SNE / UMAP / PCA) of a dataset's embeddings")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--atlas", metavar="DIR", help="atlas folder written by `convscope scan`")
    src.add_argument("--dataset", metavar="SPEC", help="mnist5k or an image folder: embed it here")
    p.add_argument("--out", required=True, metavar="PNG", help="picture to write")
    p.add_argument("--method", choices=PROJECTIONS, default="tsne", help="projection (default tsne)")
    p.add_argument("--color", choices=("label", "prediction"), default="label",
                   help="colour points by true label or by the model's prediction")
    p.add_argument("--layer", help="layer to map (atlas: one it holds, default its first; "
                                   "dataset: any layer, default auto)")
    p.add_argument("--limit", type=int, metavar="N", help="dataset: use N images evenly spread over it")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="dataset: images per forward")
    p.add_argument("--thumbnails", type=int, default=150, metavar="N", help="thumbnails drawn (0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the projection (default 0)")
    p.add_argument("--3d-json", dest="json3d", metavar="FILE",
                   help="also write a 3-D projection of the same points as JSON")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="projection option, e.g. -o perplexity=50 or -o n_neighbors=30")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_model_options(p)
    p.set_defaults(func=run_project)


def run_project(args: argparse.Namespace) -> int:
    options = parse_options(args.option)
    points = _from_atlas(args) if args.atlas else _from_dataset(args)
    if points.embeddings.shape[0] < 5:
        raise BadArgument(f"only {points.embeddings.shape[0]} readable images: too few for a map")
    start = time.perf_counter()
    coords = project(points.embeddings, args.method, seed=args.seed, **options)
    seconds = time.perf_counter() - start
    labelled = points.labels >= 0
    if args.color == "prediction" and not (points.predictions >= 0).any():
        raise BadArgument("--color prediction: there are no predictions (the atlas has none)")
    labels, names = points.labels, points.class_names
    if args.color == "prediction" and points.model_labels != points.class_names:
        # predictions index the model's classes, not the dataset's: name them by the model and
        # do not mark "misclassified" points by comparing indices of two different lists
        labels, names = np.full_like(points.labels, -1), points.model_labels
    picture = embedding_scatter(
        coords, labels, predictions=points.predictions, color_by=args.color,
        class_names=names, thumbnails=points.thumbnails, max_thumbnails=args.thumbnails,
        title=f"{args.method} of {points.layer} ({len(points.sources)} images)")
    out = save_png(picture, args.out)
    knn = None
    if labelled.sum() > 5:
        keep = torch.from_numpy(labelled)
        knn = knn_accuracy(coords[keep], torch.from_numpy(points.labels[labelled]), k=5)
    summary = {"out": str(out), "method": args.method, "layer": points.layer,
               "points": len(points.sources), "skipped": points.skipped,
               "knn_accuracy": None if knn is None else round(knn, 4),
               "projection_seconds": round(seconds, 3)}
    if args.json3d:
        summary["json3d"] = str(_write_3d(args, points, options))
    if args.json:
        print_json(summary)
    else:
        extra = f"; 5-NN label accuracy in the map {knn:.1%}" if knn is not None else ""
        print(f"wrote {out}: {args.method} map of {summary['points']} images at {points.layer} "
              f"({points.skipped} skipped){extra}")
    return 0


def _from_atlas(args: argparse.Namespace) -> Points:
    from ..data.atlas import Atlas
    from ..tasks.atlas import atlas_model

    atlas = Atlas.open(args.atlas)
    layer = args.layer or atlas.layers[0]
    emb = atlas.embeddings(layer)
    keep = atlas.valid() & np.isfinite(emb).all(1)
    idx = np.flatnonzero(keep)
    sources = atlas.sources()
    try:
        model_labels = atlas_model(atlas).labels
    except BadArgument:  # a model that cannot be reloaded by name: predictions stay numbers
        model_labels = None
    return Points(torch.from_numpy(np.ascontiguousarray(emb[idx], dtype=np.float32)),
                  atlas.labels()[idx], atlas.predictions()[idx], atlas.thumbnails(idx),
                  [sources[i] for i in idx], atlas.class_names, layer, int((~keep).sum()),
                  model_labels)


def _from_dataset(args: argparse.Namespace) -> Points:
    dataset = open_dataset(args.dataset)
    model = model_from_args(args)
    layer = resolve_layer(model, args.layer or "auto")
    total = len(dataset)
    count = total if args.limit is None else max(1, min(args.limit, total))
    indices = np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))
    parts: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []
    labels: list[int] = []
    sources: list[str] = []
    skipped = 0
    with progress_bar(len(indices), "embed") as progress:
        for start in range(0, len(indices), args.batch_size):
            images = []
            for i in indices[start:start + args.batch_size]:
                try:
                    item = dataset.load(int(i))
                except BadImage:
                    skipped += 1
                    continue
                images.append(item.image)
                labels.append(-1 if item.label is None else item.label)
                sources.append(item.source)
            if images:
                parts.append(_embed_batch(model, images, layer))
            progress(min(start + args.batch_size, len(indices)), len(indices))
    if not parts:
        raise BadImage(f"no image of dataset '{args.dataset}' could be read")
    return Points(torch.cat([p[0] for p in parts]).cpu(), np.asarray(labels, dtype=np.int64),
                  torch.cat([p[1] for p in parts]).cpu().numpy(),
                  np.concatenate([p[2] for p in parts]), sources,
                  dataset.class_names or _names(model, labels), layer, skipped, model.labels)


@torch.no_grad()
def _embed_batch(model: Model, images: list[torch.Tensor], layer: str
                 ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(embeddings (B, D), predictions (B,), thumbnails (B, t, t, 3) uint8) in one forward."""
    pixels = model.resize(images)
    with evaluating(model), capture(model, layer) as record:
        logits = model(model.normalize(pixels.to(model.device)))
        act = record[layer]
    emb = act.flatten(2).mean(2) if act.ndim > 2 else act.flatten(1)
    thumbs = pixels if pixels.shape[-1] <= THUMB else F.interpolate(
        pixels, size=(THUMB, THUMB), mode="bilinear", antialias=True, align_corners=False)
    thumbs = (thumbs.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return emb.float(), logits.argmax(1), thumbs


def _names(model: Model, labels: list[int]) -> list[str] | None:
    """Unlabelled datasets are coloured by prediction with the model's class names."""
    return model.labels if all(label < 0 for label in labels) else None


def _write_3d(args: argparse.Namespace, points: Points, options: dict) -> Path:
    coords = project(points.embeddings, args.method, dims=3, seed=args.seed, **options)
    names = points.class_names
    rows = [{"x": round(float(x), 5), "y": round(float(y), 5), "z": round(float(z), 5),
             "label": int(lab) if lab >= 0 else None, "prediction": int(pred) if pred >= 0 else None,
             "source": src}
            for (x, y, z), lab, pred, src in zip(coords.tolist(), points.labels, points.predictions,
                                                 points.sources)]
    path = Path(args.json3d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": args.method, "layer": points.layer, "class_names": names,
                                "points": rows}))
    return path
