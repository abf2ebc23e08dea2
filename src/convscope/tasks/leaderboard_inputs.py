"""What each leaderboard batch is explained for and scored against: the dataset, the class
targets (the dataset's labels mapped to the model's classes by name, or the top class) and the
object regions (boxes or masks, moved into the model's input by the photo's own crop).

Kept apart from :mod:`.leaderboard`, which walks, shards, commits and merges; everything here is
about one batch or about checking the dataset before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.datasets import ImageDataset, LoadedBatch, WrappedDataset, open_dataset
from ..data.regions import Region
from ..errors import BadArgument, check_positive
from ..methods.evaluation.faithfulness import box_mask
from ..model import Model, target_indices
from ..types import Target
from .evaluate import check_box, scale_box

SAMPLES = "samples"
"""The dataset of scikit-image sample photos (labelled with their ImageNet class where they have one)."""


class SamplePhotos(WrappedDataset):
    """The sample photos as a dataset, labelled with their ImageNet class where they have one
    (``labels`` is known without decoding, so a missing label is refused before any work)."""

    def __init__(self) -> None:
        from ..data.samples import SAMPLES as PHOTOS

        pairs = [(f"sample:{name}", s.imagenet_class) for name, s in PHOTOS.items()]
        super().__init__(pairs, SAMPLES)
        self.labels = [label for _, label in pairs]


def open_leaderboard_dataset(spec: Any) -> ImageDataset:
    """``"samples"`` (the sample photos), or anything :func:`open_dataset` accepts."""
    if spec == SAMPLES:
        return SamplePhotos()
    ds = open_dataset(spec)
    if len(ds) == 0:
        raise BadArgument(f"dataset {spec!r} is empty; give a folder or list with at least one image")
    return ds


def class_map(ds: ImageDataset, model: Model, dataset: str) -> list[int] | None:
    """The model's class index of each of the dataset's classes (by name: subfolder ``tabby``
    -> the model's label ``tabby``); None when the dataset's labels are model indices already."""
    if ds.class_names is None:
        return None
    labels = model.labels or []
    exact = {name: i for i, name in enumerate(labels)}
    folded = {name.lower(): i for i, name in enumerate(labels)}
    out = []
    for name in ds.class_names:
        index = exact.get(name, folded.get(name.lower()))
        if index is None and not labels and name.isdigit():
            index = int(name)
        if index is None:
            example = ", ".join(labels[:3])
            raise BadArgument(f"class {name!r} of dataset {dataset} is not a class of model {model.name} "
                              f"({example}, ...); name the classes after the model's labels, or use "
                              "--target top1")
        out.append(index)
    return out


def subset(size: int, images: int | None) -> list[int]:
    """``images`` indices spread evenly over the dataset (all when None): MNIST-5k is stored by
    class, so the first 200 would all be zeros."""
    if images is None or images >= size:
        return list(range(size))
    check_positive("images", images, integer=True)
    return [i * size // images for i in range(images)]


@dataclass(frozen=True)
class Inputs:
    """What every batch needs: the model, the choices, and how to find targets and regions."""

    model: Model
    ds: ImageDataset
    methods: list[str]
    metrics: list[str]
    target: Target
    classes: list[int] | None
    regions: dict[int, Region] | None
    layer: str
    steps: int
    options: dict[str, Any]
    dataset: str


def check_labels(ds: ImageDataset, indices: list[int], target: Target, dataset: str) -> None:
    """With ``target="label"``, refuse a dataset whose chosen items lack labels (known without
    decoding for folders and MNIST-5k; other datasets are checked batch by batch)."""
    if target != "label":
        return
    labels = getattr(ds, "labels", None)
    if labels is not None and len(labels) == len(ds):
        unlabelled = [i for i in indices if labels[i] is None]
        if unlabelled:
            raise BadArgument(f"dataset {dataset} has no labels (e.g. {ds.sources()[unlabelled[0]]}); "
                              "put each class in a subfolder named after it, or use --target top1")


def batch_targets(job: Inputs, got: LoadedBatch, logits: Tensor) -> Tensor:
    """The class each image is explained for: its label (mapped to the model's classes) or the
    target the user gave."""
    if job.target != "label":
        found = target_indices(logits, job.target, job.model.labels)
        if found is None:
            raise BadArgument("the leaderboard needs class targets (label, top1, an index or a name), "
                              "not a callable")
        return found
    out = []
    for index, label in zip(got.indices, got.labels):
        if label is None:
            raise BadArgument(f"dataset {job.dataset} has no label for {job.ds.sources()[index]}; "
                              "use --target top1")
        out.append(job.classes[label] if job.classes is not None else label)
    classes = logits.shape[-1]
    if max(out) >= classes:
        raise BadArgument(f"label {max(out)} of dataset {job.dataset} is beyond the model's {classes} "
                          "classes; use --target top1")
    return torch.tensor(out, device=logits.device)


def batch_regions(job: Inputs, got: LoadedBatch) -> tuple[Tensor | None, Tensor | None]:
    """(boxes (B, 4), masks (B, H, W)) in model-input pixels for the batch; masks when any image
    has one (a box becomes a filled rectangle), else boxes; (None, None) without regions."""
    if job.regions is None:
        return None, None
    model = job.model
    boxes: list[list[int] | None] = []
    masks: list[Tensor | None] = []
    for index, image in zip(got.indices, got.images):
        region = job.regions[index]
        box = None
        if region.box is not None:
            checked = check_box(region.box, image, f"box of {job.ds.sources()[index]}")
            box = scale_box(checked, model.spec.box(*image.shape[-2:]), model.input_size)
        boxes.append(box)
        mask = region.mask_image()
        if mask is not None and mask.shape[-2:] != image.shape[-2:]:
            raise BadArgument(f"mask {region.mask} is {mask.shape[-1]}x{mask.shape[-2]} but image "
                              f"{job.ds.sources()[index]} is {image.shape[-1]}x{image.shape[-2]}; "
                              "make them the same size")
        masks.append(None if mask is None else model.resize([mask.expand(3, -1, -1)])[0, 0] > 0.5)
    if all(m is None for m in masks):
        return torch.tensor(boxes, device=model.device), None
    stacked = [m if m is not None else box_mask(torch.tensor([b]), model.input_size)[0, 0]
               for m, b in zip(masks, boxes)]  # a row without a mask has a box (read_regions)
    return None, torch.stack(stacked).to(model.device)
