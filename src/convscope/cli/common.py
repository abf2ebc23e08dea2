"""Options and helpers that several commands share (model choice, device, JSON output)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import BadArgument
from ..model import DEFAULT_MODEL, Model, load_model
from ..model.device import pick_device
from ..tasks.retrofit import load_cam_head


def add_model_options(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """The model options; with ``several``, ``--model`` may be given more than once (a list)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None if several else DEFAULT_MODEL,
                       action="append" if several else "store",
                       help="zoo name, checkpoint path (.pt2 torch.export, TorchScript, state dict), "
                            "path/to/net.py:factory, package.module:factory (importable: installed "
                            f"or on PYTHONPATH), torchvision:NAME or timm:NAME (default: {DEFAULT_MODEL})")
    group.add_argument("--weights", help="state-dict file to load into the model")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow a checkpoint that needs pickle (it can run code)")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    group.add_argument("--cam-head", metavar="FILE",
                       help="put a head written by `convscope cam-retrofit` on the model (CAM-ready)")
    group.add_argument("--input-size", metavar="N|HxW",
                       help="model input size, e.g. 64 or 64x48 (default: the model's own, else 224)")
    group.add_argument("--mean", metavar="M[,M,M]", help="normalization mean per channel, e.g. 0.5,0.5,0.5")
    group.add_argument("--std", metavar="S[,S,S]", help="normalization std per channel")
    group.add_argument("--channels", type=int, choices=(1, 3), help="input channels: 3 (RGB) or 1 (gray)")
    group.add_argument("--resize", choices=("crop", "letterbox", "stretch"),
                       help="fit images of another shape: centre crop (default), letterbox or stretch")
    group.add_argument("--crop-fraction", type=float, metavar="F",
                       help="with --resize crop: keep this fraction of the shorter side (default 1; "
                            "torchvision's ImageNet models use 0.875)")
    group.add_argument("--frames", type=int, metavar="T",
                       help="a video (3-D) model: its clip length, the fewest frames a video may have; "
                            "IMAGE is then a folder of frames or an animated GIF/WebP")
    group.add_argument("--labels", metavar="FILE",
                       help="class names: a text file with one per line or a JSON list (or 'imagenet')")



def parse_size(text: str) -> tuple[int, int]:
    """``"64"`` -> (64, 64); ``"64x48"`` -> (64, 48) (height x width)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers, default=0) < 1:
        raise BadArgument(f"--input-size {text!r}: give N or HxW in pixels, e.g. 64 or 64x48")
    return (numbers[0], numbers[-1])


def parse_floats(option: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BadArgument(f"{option} {text!r}: give comma-separated numbers, e.g. 0.5,0.5,0.5") from None


def read_labels(path: str) -> list[str] | str:
    """Class names from a file: a JSON list, or one name per line (blank lines skipped)."""
    if path == "imagenet":
        return path
    file = Path(path)
    if not file.exists() or file.is_dir():  # exists(): a pipe such as <(...) is fine too
        raise BadArgument(f"--labels {path!r}: no such file; give one class name per line or a JSON list")
    text = file.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise BadArgument(f"--labels {path!r} is not valid JSON ({err.msg}, line {err.lineno})") from err
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise BadArgument(f"--labels {path!r}: the JSON must be a list of names")
        return [str(n) for n in names]
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise BadArgument(f"--labels {path!r} is empty; give one class name per line")
    return names


def preprocess_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing fields given on the command line (the rest stay the model's own)."""
    fields: dict[str, Any] = {}
    if getattr(args, "input_size", None):
        fields["input_size"] = parse_size(args.input_size)
    for option in ("mean", "std"):
        if getattr(args, option, None):
            fields[option] = parse_floats(f"--{option}", getattr(args, option))
    if getattr(args, "channels", None):
        fields["channels"] = args.channels
    if getattr(args, "resize", None):
        fields["resize"] = args.resize
    if getattr(args, "crop_fraction", None) is not None:
        fields["crop_fraction"] = args.crop_fraction
    if getattr(args, "frames", None) is not None:
        fields["frames"] = args.frames
    return fields


def model_from_args(args: argparse.Namespace, device: str | None = None) -> Model:
    """The model the options describe; ``device`` overrides ``--device`` (e.g. a torchrun rank's)."""
    labels = read_labels(args.labels) if getattr(args, "labels", None) else None
    model = load_model(args.model, weights=args.weights, trust_checkpoint=args.trust_checkpoint,
                       device=pick_device(device or args.device), preprocess=preprocess_from_args(args),
                       labels=labels)
    return load_cam_head(model, args.cam_head) if getattr(args, "cam_head", None) else model


def rank_device(name: str) -> str:
    """``auto`` under torchrun on a GPU machine means this process's own GPU."""
    import torch

    if name == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return name


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
