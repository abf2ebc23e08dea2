"""``convscope evaluate``: how faithful attribution maps are, per method, as a table and JSON.

For each method and image: deletion and insertion AUC (Petsiuk et al. 2018; lower deletion and
higher insertion are better), and, when ``--box`` gives the object's box for each image, the
pointing game (15 px tolerance), the energy inside the box and the IoU of the CAM box. With
``--sanity`` the cascading randomization test (Adebayo et al. 2018) runs on a copy of the model
for ``--sanity-steps`` steps from the logits down and reports the smallest rank correlation with
the original map and whether the method is flagged as insensitive to the model.

Boxes are ``TOP,LEFT,BOTTOM,RIGHT`` in pixels of the ORIGINAL image (bottom/right exclusive, like
slicing), one ``--box`` per image in order; they are scaled to the model's input size.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import BadArgument, ConvscopeError
from ..methods.evaluation.faithfulness import (
    box_energy,
    deletion,
    insertion,
    localization_iou,
    pointing_game,
)
from ..methods.evaluation.sanity import cascading_randomization
from ..methods.registry import get_method, method_names
from ..model import FastForward, Model, target_indices
from ..tasks.explain import explain
from ..tasks.inputs import as_images
from .common import add_model_options, model_from_args, print_json
from .options import parse_options, parse_target
from .progress import progress_bar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="faithfulness (deletion/insertion, boxes) and sanity scores")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or sample:NAME")
    p.add_argument("--method", required=True,
                   help=f"a method, comma-separated methods or all ({', '.join(method_names())})")
    p.add_argument("--target", default="top1", help="class index, label or top1 (default)")
    p.add_argument("--layer", default="auto", help="layer for CAM-family methods (default auto)")
    p.add_argument("--box", action="append", metavar="TOP,LEFT,BOTTOM,RIGHT",
                   help="object box in original image pixels, once per image (optional)")
    p.add_argument("--steps", type=int, default=100, help="deletion/insertion steps (default 100)")
    p.add_argument("--sanity", action="store_true", help="run the cascading randomization test")
    p.add_argument("--sanity-steps", type=int, default=5,
                   help="randomization steps (blocks) from the logits down (default 5)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="method option, repeatable (e.g. -o steps=32)")
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    add_model_options(p)
    p.set_defaults(func=run_evaluate)


def parse_box(text: str, image: Tensor) -> tuple[float, float, float, float]:
    """``"T,L,B,R"`` in original image pixels, checked against the image's size."""
    try:
        top, left, bottom, right = (float(v) for v in text.split(","))
    except ValueError:
        raise BadArgument(f"--box {text!r}: give TOP,LEFT,BOTTOM,RIGHT, four numbers") from None
    height, width = image.shape[-2:]
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise BadArgument(f"--box {text!r} does not fit the {width}x{height} image: need "
                          f"0 <= TOP < BOTTOM <= {height} and 0 <= LEFT < RIGHT <= {width}")
    return top, left, bottom, right


def scale_box(box: tuple[float, float, float, float], image: Tensor, size: tuple[int, int]) -> list[int]:
    """A box in original pixels -> model-input pixels (the image is resized, not cropped), grown
    outwards to whole pixels."""
    sy, sx = size[0] / image.shape[-2], size[1] / image.shape[-1]
    top, left, bottom, right = box
    eps = 1e-6  # 300 * (224 / 400) is 168.00000000000003 in floating point, not 169
    return [math.floor(top * sy + eps), math.floor(left * sx + eps),
            math.ceil(bottom * sy - eps), math.ceil(right * sx - eps)]


def faithfulness_scores(model: Model, x: Tensor, maps: Tensor, targets: Tensor, steps: int,
                        fast: FastForward | None = None) -> dict[str, list[float]]:
    """Deletion and insertion AUC per image (also used by ``convscope report``)."""
    fast = fast if fast is not None else FastForward(model)
    return {"deletion_auc": deletion(model, x, maps, targets, steps=steps, fast=fast).auc.tolist(),
            "insertion_auc": insertion(model, x, maps, targets, steps=steps, fast=fast).auc.tolist()}


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4)


def evaluate_method(model: Model, x: Tensor, method: str, targets: Tensor, args: argparse.Namespace,
                    boxes: Tensor | None, fast: FastForward) -> dict[str, Any]:
    """Every metric for one method on the batch (per image and means)."""
    options = parse_options(args.option)
    result = explain(model, x, method=method, target=targets, layer=args.layer, **options)
    per: dict[str, list[float]] = faithfulness_scores(model, x, result.values, targets, args.steps, fast)
    if boxes is not None:
        per["pointing_game"] = pointing_game(result.values, boxes).float().tolist()
        per["energy"] = box_energy(result.values, boxes).tolist()
        per["iou"] = localization_iou(result.values, boxes).tolist()
    row: dict[str, Any] = {"method": method, "layer": result.layer, "seconds": round(result.seconds, 4)}
    row |= {f"{k}_mean": _mean(v) for k, v in per.items()}
    row["per_image"] = [{k: round(v[i], 4) for k, v in per.items()} for i in range(len(x))]
    if args.sanity:
        layer = args.layer if get_method(method).needs_layer else None
        check = cascading_randomization(model, x, method, targets, layer=layer,
                                        max_steps=args.sanity_steps, **options)
        row["sanity"] = {"lowest_spearman": round(check.lowest, 4), "flagged": check.flagged,
                         "threshold": check.threshold,
                         "steps": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                                   for r in check.rows()]}
    return row


COLUMNS = [("deletion_auc_mean", "deletion↓"), ("insertion_auc_mean", "insertion↑"),
           ("pointing_game_mean", "pointing"), ("energy_mean", "energy"), ("iou_mean", "IoU")]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Methods as rows, metrics as columns (means over images); a failed method shows its error."""
    shown = [(k, h) for k, h in COLUMNS if any(k in r for r in rows)]
    sanity = any("sanity" in r for r in rows)
    header = ["method", *(h for _, h in shown)] + (["sanity ρmin", "flag"] if sanity else [])
    table = [header]
    for r in rows:
        if "error" in r:
            continue
        cells = [r["method"], *(f"{r[k]:.3f}" for k, _ in shown)]
        if sanity:
            s = r["sanity"]
            cells += [f"{s['lowest_spearman']:.2f}", "INSENSITIVE" if s["flagged"] else "ok"]
        table.append(cells)
    widths = [max(len(c[i]) for c in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in table]
    lines += [f"{r['method']}: error: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.sanity_steps < 1:
        raise BadArgument("--steps and --sanity-steps must be positive integers")
    methods = method_names() if args.method == "all" else [
        m.strip() for m in args.method.split(",") if m.strip()]
    for m in methods:
        get_method(m)  # fail before any work on a typo
    if args.box and len(args.box) != len(args.images):
        raise BadArgument(f"{len(args.box)} --box for {len(args.images)} images: give one box per "
                          "image, in the order of the images")
    images = as_images(args.images)
    given = [parse_box(b, img) for b, img in zip(args.box or [], images)]
    model = model_from_args(args)
    x = model.preprocess(images)
    boxes = None
    if given:
        boxes = torch.tensor([scale_box(b, img, model.input_size) for b, img in zip(given, images)],
                             device=x.device)
    fast = FastForward(model)
    targets = target_indices(fast(x), parse_target(args.target), model.labels)
    assert targets is not None
    rows = []
    with progress_bar(len(methods), "evaluate") as progress:
        for i, method in enumerate(methods):
            try:
                rows.append(evaluate_method(model, x, method, targets, args, boxes, fast))
            except ConvscopeError as err:
                if len(methods) == 1:
                    raise
                rows.append({"method": method, "error": str(err)})
            progress(i + 1, len(methods))
    report = {"model": model.name, "images": args.images, "steps": args.steps,
              "targets": targets.tolist(), "target_labels": [model.label(int(t)) for t in targets],
              "boxes": boxes.tolist() if boxes is not None else None, "methods": rows}
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.json:
        print_json(report)
    else:
        print(format_table(rows))
        if args.out:
            print(f"wrote {args.out}")
    return 0
