"""The README's "Bring your own model" pictures: ``python docs/byom_pictures.py`` (needs torchvision).

Grad-CAM on torchvision models through the public API only: ``load_model(module, ...)``,
``explain(..., method="gradcam")`` and ``Explanation.overlay``, which draws the map on the
original photo at its own size. Nothing is downloaded, so every model has seeded RANDOM weights:
the pictures show which layer convscope reads and that the overlay keeps the photo's shape, not
what a trained model sees.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

import convscope
from convscope.render import image_grid, save_png

OUT = Path(__file__).parent / "images"
PHOTO = "sample:motorcycle"  # 741x500: wide, so a squashed overlay would show
TARGET = 0  # a random head has no meaningful class; explain the same output everywhere
PREPROCESS = {"input_size": (224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
TILE = (420, 300)  # (w, h) box each tile is fitted into, keeping its aspect ratio


def _model(net: nn.Module) -> convscope.Model:
    return convscope.load_model(net.eval(), preprocess=PREPROCESS)


def _caption(name: str, result: convscope.Explanation) -> str:
    grid = "x".join(str(n) for n in result.raw.shape[-2:]) if isinstance(result.raw, torch.Tensor) else "?"
    return f"{name} (random weights): Grad-CAM of output {TARGET} at layer '{result.layer}', {grid} grid"


def cnn_picture(photo: torch.Tensor) -> None:
    """The original photo beside Grad-CAM from a torchvision ResNet-50 ("auto" layer)."""
    torch.manual_seed(0)
    model = _model(torchvision.models.resnet50(weights=None))
    result = convscope.explain(model, photo, method="gradcam", target=TARGET)
    h, w = photo.shape[-2:]
    captions = [f"{PHOTO}, {w}x{h}", _caption("resnet50", result)]
    reason = result.layer_reason or ""
    title = ("Grad-CAM on torchvision resnet50 with RANDOM weights: the map shows which layer convscope "
             "reads and that the overlay keeps the photo's shape, not what a trained model sees")
    if reason and len(reason) < 140:
        captions[1] += f" ({reason})"
    save_png(image_grid([photo, result.overlay(0)], captions=captions, ncols=2, tile_size=TILE,
                        caption_lines=4, title=title), OUT / "byom_gradcam.png")


def vit_picture(photo: torch.Tensor) -> None:
    """Grad-CAM on vit_b_16 and swin_t: token maps reshaped to the patch grid, drawn on the photo."""
    tiles, captions = [photo], [f"{PHOTO}, {photo.shape[-1]}x{photo.shape[-2]}"]
    for name in ("vit_b_16", "swin_t"):
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None)
        if name == "vit_b_16":  # torchvision starts this head at zero: every gradient would be zero
            nn.init.normal_(net.heads.head.weight, std=0.01)
        result = convscope.explain(_model(net), photo, method="gradcam", target=TARGET)
        tiles.append(result.overlay(0))
        captions.append(_caption(name, result))
    title = ("Grad-CAM on torchvision transformers with RANDOM weights, through the token-to-grid "
             "reshape: the map's resolution is the patch grid, not what a trained model sees")
    save_png(image_grid(tiles, captions=captions, ncols=3, tile_size=TILE, caption_lines=4,
                        title=title), OUT / "byom_vit.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    photo = convscope.load_image(PHOTO)
    cnn_picture(photo)
    vit_picture(photo)
    print(f"pictures written to {OUT}")


if __name__ == "__main__":
    main()
