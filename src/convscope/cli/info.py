"""Commands that describe things: ``samples``, ``predict``, ``layers``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data import list_samples
from ..model.boxes import xyxy_to_tlbr
from ..render import draw_boxes, save_png
from ..render.segments import segmentation_overlay
from ..tasks.inputs import stem
from ..tasks.layers import layer_table
from ..tasks.predict import Detections, Segmentation, dense_prediction, predict
from .common import add_model_options, model_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("samples", help="list the sample images (usable as sample:NAME)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_samples)

    p = sub.add_parser("predict", help="top classes of one or more images")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or sample:NAME")
    p.add_argument("--top", type=int, default=5, help="how many classes (default 5)")
    p.add_argument("--out", help="detectors: the picture of the first image with its boxes (PNG); "
                                 "segmenters: the coloured class mask of the first image (default "
                                 "IMAGE_segments.png; one per image)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_model_options(p)
    p.set_defaults(func=run_predict)

    p = sub.add_parser("layers", help="list the model's layers with types and output shapes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_model_options(p)
    p.set_defaults(func=run_layers)


def run_samples(args: argparse.Namespace) -> int:
    samples = list_samples()
    if args.json:
        print_json([{"name": f"sample:{n}", "description": d} for n, d in samples.items()])
    else:
        width = max(len(n) for n in samples) + 7
        for name, description in samples.items():
            print(f"{'sample:' + name:<{width}}  {description}")
    return 0


def run_detect(args: argparse.Namespace, found: Detections) -> int:
    """A detector's detections of each image (and the first image with its boxes, ``--out``)."""
    if args.out:
        rows = found.detections[0]
        boxes = xyxy_to_tlbr(torch.tensor([d.box for d in rows]).reshape(-1, 4))
        save_png(draw_boxes(found.images[0], boxes, [f"#{d.index} {d.label} {d.score:.2f}" for d in rows]),
                 args.out)
    if args.json:
        print_json([{"image": img, "detections": [d.as_dict() for d in rows]}
                    for img, rows in zip(args.images, found.detections)])
        return 0
    for img, rows in zip(args.images, found.detections):
        print(f"{img}: {len(rows)} detections (box x0,y0,x1,y1 in model-input pixels)")
        for d in rows:
            print(f"  #{d.index} {d.label} (class {d.class_index})  {d.score:.3f}  "
                  f"--box {','.join(f'{v:g}' for v in d.box)}")
    return 0


def run_segment(args: argparse.Namespace, found: list[Segmentation]) -> int:
    """A segmenter's prediction: the classes it sees and their share, and a coloured mask."""
    pictures = []
    for i, (img, seg) in enumerate(zip(args.images, found)):
        out = Path(args.out) if args.out and i == 0 else Path(f"{stem(img)}_segments.png")
        pictures.append(str(save_png(segmentation_overlay(seg.image, seg.classes,
                                                          background=seg.background), out)))
    if args.json:
        print_json([{"image": img, "png": png} | seg.as_dict()
                    for img, seg, png in zip(args.images, found, pictures)])
        return 0
    for img, seg, png in zip(args.images, found, pictures):
        print(f"{img}: {png}")
        for index, label, share in seg.shares[: args.top]:
            print(f"  {label} (class {index})  {share:.1%} of the pixels")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    found = dense_prediction(model, args.images)  # one forward tells a detector or segmenter
    if isinstance(found, Detections):
        return run_detect(args, found)
    if found is not None:
        return run_segment(args, found)
    results = predict(model, args.images, top=args.top)
    if args.json:
        print_json([{"image": img, "predictions": [p.as_dict() for p in preds]}
                    for img, preds in zip(args.images, results)])
        return 0
    for img, preds in zip(args.images, results):
        print(img)
        for p in preds:
            print(f"  {p.rank}. {p.label} (class {p.index})  {p.probability:.3f}")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    table = layer_table(model)
    if args.json:
        print_json(table.as_json())
        return 0
    layers = table.rows
    width = max(len(i.name) for i in layers)
    print(f"{'name':<{width}}  {'type':<18} {'params':>9}  output shape")
    for i in layers:
        shape = "x".join(map(str, i.output_shape)) if i.output_shape else "-"
        print(f"{i.name:<{width}}  {i.type:<18} {i.params:>9}  {shape}")
    if table.auto is not None:
        print(f"\nlayer 'auto' = {table.auto.name}: {table.auto.reason}")
    spec = model.spec
    size = "x".join(map(str, spec.input_size))
    if spec.frames is not None:
        size = f"clips of {spec.frames}+ frames of {size}"
    source = model.preprocess_source or "the options given and convscope defaults"
    print(f"\npreprocessing: {size}, mean {spec.mean}, std {spec.std}, {spec.resize} "
          f"{spec.crop_fraction:g}, from {source}")
    return 0
