"""Regenerate the README's pictures from the code: ``python docs/make_pictures.py``.

Uses only the public API and CLI, so the pictures show what a user gets. The report screenshot
needs Debian's ``chromium`` (skipped with a note when it is missing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import convscope
from convscope.cli.main import main as cli
from convscope.render import draw_boxes, image_grid, save_png

OUT = Path(__file__).parent / "images"
METHODS = ["saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "gradcam",
           "gradcam_pp"]


def two_object_image() -> torch.Tensor:
    """Cat (left) and espresso (right), each centre-cropped to 3:4 and placed side by side."""
    halves = []
    for name in ("cat", "coffee"):
        img = convscope.load_image(f"sample:{name}")
        h, w = img.shape[-2:]
        cw = min(w, int(h * 0.75))
        img = img[:, :, (w - cw) // 2:(w - cw) // 2 + cw]
        halves.append(F.interpolate(img[None], size=(224, 112), mode="bilinear",
                                    antialias=True)[0])
    return torch.cat(halves, dim=2)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = convscope.load_model()
    with tempfile.TemporaryDirectory() as tmp:
        cli(["demo", "--out", tmp])
        shutil.copy(Path(tmp) / "predictions.png", OUT / "predictions.png")
        chromium = shutil.which("chromium")
        if chromium:
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={tmp}/chrome", "--window-size=1000,1260",
                            f"--screenshot={OUT / 'report.png'}",
                            f"file://{tmp}/report.html"], check=True, capture_output=True)
        else:
            print("chromium not found: report.png not regenerated", file=sys.stderr)

    cat = model.preprocess(convscope.load_image("sample:cat"))
    tiles = [model.denormalize(cat)[0].clamp(0, 1)]
    captions = ["sample:cat (Egyptian cat, 285)"]
    for method in METHODS:
        result = convscope.explain(model, cat, method=method, target=285)
        tiles.append(result.overlay(0))
        captions.append(f"{method} ({result.seconds:.2f} s)")
    save_png(image_grid(tiles, captions=captions, ncols=4,
                        title="one image, every method: convscope.explain(model, x, method=...)"),
             OUT / "methods.png")

    both = two_object_image()
    tiles, captions = [both], ["cat + espresso in one image"]
    for target in (285, 967):
        result = convscope.explain(model, both, method="gradcam", target=target)
        box = result.localize(0.2).boxes[0]
        tiles.append(draw_boxes(result.overlay(0), box[None], [result.target_labels[0]]))
        captions.append(f"Grad-CAM for {result.target_labels[0]} ({target}); box {box.tolist()}")
    save_png(image_grid(tiles, captions=captions, ncols=3,
                        title="the map follows the target; CAM box at 20% of the maximum"),
             OUT / "two_targets.png")
    print(f"pictures written to {OUT}")


if __name__ == "__main__":
    main()
