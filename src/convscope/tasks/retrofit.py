"""CAM retrofit as a task: fit a GAP + linear head from a labelled folder, save and reload it.

The head file holds only the head (never the user's trunk), as plain tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import load_labelled_folder
from ..errors import BadArgument
from ..methods.attribution.cam_retrofit import CAMHeadNet, Retrofit, cam_ready_model, fit_cam_head
from ..model import Model, resolve_layer
from ..model.layers import unwrap
from ..types import ProgressFn


def retrofit_cam(model: Model, folder: str | Path, *, layer: str = "auto",
                 progress: ProgressFn | None = None, **options: Any) -> Retrofit:
    """Make ``model`` CAM-ready: a GAP + linear head on ``layer``, fitted on a labelled folder.

    ``folder`` holds one subfolder of images per class. The user's model is not changed; the
    result's ``model`` is a new CAM-ready model and ``accuracy`` / ``original_accuracy`` compare
    it with the original on held-out images (options: see ``methods.attribution.cam_retrofit``).
    """
    images, labels, classes, _paths = load_labelled_folder(folder)
    return fit_cam_head(model, images, labels, classes, layer=layer, progress=progress, **options)


CAM_HEAD_FORMAT = "convscope-cam-head/1"


def save_cam_head(retrofit: Retrofit, path: str | Path) -> Path:
    """Write a retrofit's head (layer, classes, linear weights) as plain tensors.

    Only the head is saved, never the trunk: it is the user's model, which they already have.
    The file loads with ``torch.load(weights_only=True)``, so sharing it is safe.
    """
    net = unwrap(retrofit.model)
    assert isinstance(net, CAMHeadNet)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CAM_HEAD_FORMAT, "layer": retrofit.source_layer, "classes": retrofit.classes,
                "weight": net.fc.weight.detach().cpu(), "bias": net.fc.bias.detach().cpu(),
                "accuracy": retrofit.accuracy}, path)
    return path


def load_cam_head(model: Model, path: str | Path) -> Model:
    """``model`` with a head written by :func:`save_cam_head` on top: a CAM-ready model."""
    try:
        head = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise BadArgument(f"CAM head '{path}' does not exist; write one with convscope cam-retrofit") from err
    except Exception as err:  # any unreadable file is one clear message
        raise BadArgument(f"'{path}' is not a CAM head file ({type(err).__name__}); write one with "
                          "convscope cam-retrofit") from err
    if not isinstance(head, dict) or head.get("format") != CAM_HEAD_FORMAT:
        raise BadArgument(f"'{path}' is not a CAM head file; write one with convscope cam-retrofit")
    layer = resolve_layer(model, head["layer"])
    weight, bias = head["weight"], head["bias"]
    fc = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        fc.weight.copy_(weight)
        fc.bias.copy_(bias)
    return cam_ready_model(model, layer, fc, head["classes"])
