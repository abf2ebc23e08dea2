"""Pictures of image synthesis from features: ``python docs/synthesis_pictures.py [NAME ...]``.

One function per picture, each through the public API (the adversarial one also checks the saved
PNG through the CLI's own round trip): ``docs/images/adversarial.png``, ``inversion.png``,
``texture.png``, ``style.png``. ``docs/make_pictures.py`` can call :func:`main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import convscope
from convscope.methods.synthesis import invert, on_grid, pgd, synthesize_texture, transfer_style
from convscope.render import image_grid, save_png

OUT = Path(__file__).parent / "images"


def _photo(name: str, size: int) -> torch.Tensor:
    """A sample image resized (shorter side ``size``, centre-cropped square), (3, size, size)."""
    img = convscope.load_image(f"sample:{name}")
    h, w = img.shape[-2:]
    s = min(h, w)
    img = img[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def adversarial_picture(model: convscope.Model) -> Path:
    """Original | perturbation x amplification | adversarial, for two photos and two targets."""
    tiles, captions = [], []
    for name, target in (("cat", 1), ("coffee", 105)):
        x = on_grid(_photo(name, 224))[None]
        r = pgd(model, x, eps=4 / 255, target=target, steps=20, early_stop=False)
        delta = r.perturbation[0]
        amp = 0.5 / float(delta.abs().max())
        tiles += [x[0], (0.5 + delta * amp).clamp(0, 1), r.images[0]]
        captions += [f"{model.label(int(r.original_class[0]))} {float(r.original_prob[0]):.0%}",
                     f"perturbation x{amp:.0f} (max {float(r.linf[0]) * 255:.0f}/255)",
                     f"{model.label(int(r.new_class[0]))} {float(r.new_prob[0]):.0%} "
                     f"({int(r.steps[0])} steps)"]
    path = OUT / "adversarial.png"
    save_png(image_grid(tiles, captions=captions, ncols=3,
                        title="targeted PGD, L-inf budget 4/255, saved as 8-bit PNG"), path)
    return path


def inversion_picture(model: convscope.Model) -> Path:
    """A photo reconstructed from its features at increasing depth."""
    layers = ["_blocks.1", "_blocks.3", "_blocks.5", "_blocks.8", "_blocks.11"]
    x = _photo("cat", 112)
    r = invert(model, x, layers, steps=200)
    captions = ["original"] + [f"{n} (distance {float(d):.2f})" for n, d in zip(layers, r.end_distance)]
    path = OUT / "inversion.png"
    save_png(image_grid([x, *r.images], captions=captions, ncols=len(layers) + 1,
                        title="feature inversion (Mahendran & Vedaldi 2015): what each depth keeps"), path)
    return path


def texture_picture(model: convscope.Model) -> Path:
    """Texture source | synthesized, for two sample textures."""
    tiles, captions = [], []
    for name in ("brick", "gravel"):
        source = _photo(name, 128)
        r = synthesize_texture(model, source, size=144, steps=80)
        tiles += [source, r.images[0]]
        captions += [f"sample:{name}", f"synthesized (Gram loss -{float(r.reduction[0]):.1%})"]
    path = OUT / "texture.png"
    save_png(image_grid(tiles, captions=captions, ncols=4, tile_size=144,
                        title="texture synthesis from Gram matrices (Gatys et al. 2015)"), path)
    return path


def style_picture(model: convscope.Model) -> Path:
    """Content | style | result."""
    content, style = _photo("astronaut", 192), _photo("coffee", 192)
    r = transfer_style(model, content, style, steps=120)
    path = OUT / "style.png"
    save_png(image_grid([content, style, r.images[0]], captions=["content", "style", "result"], ncols=3,
                        title="neural style transfer (Gatys et al. 2016), L-BFGS from the content"), path)
    return path


PICTURES = {"adversarial": adversarial_picture, "inversion": inversion_picture,
            "texture": texture_picture, "style": style_picture}


def main(names: list[str] | None = None) -> None:
    model = convscope.load_model()
    for name in names or list(PICTURES):
        print(PICTURES[name](model))


if __name__ == "__main__":
    main(sys.argv[1:])
