"""Regenerate the README's pictures from the code: ``python docs/make_pictures.py``.

The synthesis, fast-style and dataset pictures come from the sibling scripts
(``synthesis_pictures.py``, ``fast_style_pictures.py``, ``dataset_pictures.py``,
``atlas_pictures.py``), which also run on their own.

Uses only the public API and CLI, so the pictures show what a user gets. The report screenshot
needs Debian's ``chromium`` (skipped with a note when it is missing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import convscope
from convscope.cli.main import main as cli
from convscope.render import draw_boxes, image_grid, save_png

OUT = Path(__file__).parent / "images"
METHODS = ["saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "gradcam",
           "gradcam_pp"]


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

    both = convscope.load_image("sample:cat_and_coffee")
    tiles, captions = [both], ["cat + espresso in one image"]
    for target in (285, 967):
        result = convscope.explain(model, both, method="gradcam", target=target)
        box = result.localize(0.2).boxes[0]
        tiles.append(draw_boxes(result.overlay(0), box[None], [result.target_labels[0]]))
        captions.append(f"Grad-CAM for {result.target_labels[0]} ({target}); box {box.tolist()}")
    save_png(image_grid(tiles, captions=captions, ncols=3,
                        title="the map follows the target; CAM box at 20% of the maximum"),
             OUT / "two_targets.png")
    inside_pictures(model)
    import atlas_pictures  # the sibling scripts: python puts this folder on sys.path
    import dataset_pictures
    import fast_style_pictures
    import synthesis_pictures

    synthesis_pictures.main()
    fast_style_pictures.main([])
    dataset_pictures.main()
    atlas_pictures.main()
    print(f"pictures written to {OUT}")


def inside_pictures(model: convscope.Model) -> None:
    """Filters, feature maps, an activation mask and feature visualizations (the README's tour)."""
    cli(["filters", "--sort", "norm", "--out", str(OUT / "filters.png")])
    cli(["featuremaps", "sample:cat", "--layer", "_blocks.3", "--top", "15",
         "--out", str(OUT / "featuremaps.png")])
    cli(["mask", "sample:cat", "--layer", "_blocks.9._relu1", "--channel", "215", "--quantile", "0.95",
         "--out", str(OUT / "mask.png")])
    cli(["visualize", "--layer", "_blocks.8", "--gallery", "16", "--out", str(OUT / "gallery.png")])
    tiles, captions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, options, caption in (
                ("pixel", ["--param", "pixel", "--l2", "400"], "pixels + L2 (Simonyan 2014)"),
                ("fourier", ["--param", "fourier"], "Fourier + colour (Olah 2017)")):
            png = Path(tmp) / f"{name}.png"
            cli(["visualize", "--objective", "logit:285", *options, "--steps", "512", "--out", str(png)])
            image = convscope.load_image(png)  # what counts is the saved 8-bit PNG
            top = convscope.predict(model, image, top=1)[0][0]
            tiles.append(image)
            captions.append(f"{caption}\n{top.label} {top.probability:.2f}")
    save_png(image_grid(tiles, captions=captions, ncols=2,
                        title='class 285 "Egyptian cat", 512 steps, standard transforms'),
             OUT / "visualize_class.png")


if __name__ == "__main__":
    main()
