"""Pictures of image synthesis from features: ``python docs/synthesis_pictures.py [NAME ...]``.

One function per picture: ``docs/images/adversarial.png``, ``inversion.png``, ``texture.png``,
``style.png``. The adversarial and style pictures are made by running the README's commands
themselves (``convscope adversarial ...``, ``convscope style ... --compare``), so what the README
shows is exactly what those commands give. ``docs/make_pictures.py`` can call :func:`main`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import convscope
from convscope.cli.main import main as cli
from convscope.cli.synthesis import sized
from convscope.methods.synthesis import invert, on_grid, synthesize_texture
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


ADVERSARIAL = (("cat", "goldfish"), ("coffee", "koala"))
"""The README's ``convscope adversarial sample:NAME --target T --eps 4/255`` runs, with its defaults."""


def adversarial_picture(model: convscope.Model) -> Path:
    """Original | perturbation (amplified) | adversarial, one row per README command."""
    tiles, captions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, target in ADVERSARIAL:
            out = Path(tmp) / f"{name}.png"
            assert cli(["adversarial", f"sample:{name}", "--target", target, "--eps", "4/255",
                        "--out", str(out)]) == 0
            r = json.loads(out.with_suffix(".json").read_text())
            original = on_grid(sized(model, convscope.load_image(f"sample:{name}"), None))[0].cpu()
            tiles += [original, convscope.load_image(str(out.with_name(f"{name}_perturbation.png"))),
                      convscope.load_image(str(out))]
            captions += [f"{r['original'].rsplit(' (', 1)[0]} {r['original_prob']:.0%}",
                         f"perturbation x{r['perturbation_amplified']:.0f} (max {r['linf_255']:.0f}/255)",
                         f"{r['adversarial'].rsplit(' (', 1)[0]} {r['adversarial_prob']:.0%} "
                         f"({r['steps']} steps)"]
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
    """Content | style | result: the README's ``convscope style`` command with ``--compare``."""
    path = OUT / "style.png"
    assert cli(["style", "sample:astronaut", "sample:coffee", "--size", "192", "--compare",
                "--out", str(path)]) == 0
    path.with_suffix(".json").unlink()  # the command's summary; the README shows the picture only
    return path


PICTURES = {"adversarial": adversarial_picture, "inversion": inversion_picture,
            "texture": texture_picture, "style": style_picture}


def main(names: list[str] | None = None) -> None:
    model = convscope.load_model()
    for name in names or list(PICTURES):
        print(PICTURES[name](model))


if __name__ == "__main__":
    main(sys.argv[1:])
