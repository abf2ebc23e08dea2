"""Options and helpers that several commands share (model choice, device, JSON output)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from ..errors import BadArgument
from ..model import DEFAULT_MODEL, Model, load_model
from ..tasks.retrofit import load_cam_head


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="zoo name, checkpoint path, package.module:factory, torchvision:NAME "
                            f"or timm:NAME (default: {DEFAULT_MODEL})")
    group.add_argument("--weights", help="state-dict file to load into the model")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow a checkpoint that needs pickle (it can run code)")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    group.add_argument("--cam-head", metavar="FILE",
                       help="put a head written by `convscope cam-retrofit` on the model (CAM-ready)")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise BadArgument(f"--device {name!r} is not a device; use cpu, cuda or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadArgument(f"--device {name!r}: CUDA is not available here; use cpu or auto")
    return device


def model_from_args(args: argparse.Namespace) -> Model:
    model = load_model(args.model, weights=args.weights, trust_checkpoint=args.trust_checkpoint,
                       device=pick_device(args.device))
    return load_cam_head(model, args.cam_head) if getattr(args, "cam_head", None) else model


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
