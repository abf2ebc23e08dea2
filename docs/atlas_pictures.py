"""Pictures of dataset scans for the README: ``python docs/atlas_pictures.py``.

docs/images/top_patches.png: digits_cnn scanned over MNIST-5k; for a few channels of an early
layer (``block2``: 14x14 map, 8x8 px receptive field) the input patches behind the top
activations, one row per channel. Early units should respond to stroke pieces: edges and bars
at one orientation, line ends, corners.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch

from convscope.model import load_model
from convscope.render.grid import image_grid
from convscope.render.heatmap import save_png
from convscope.tasks.atlas import top_patches
from convscope.tasks.scan import scan_dataset

OUT = Path(__file__).with_name("images") / "top_patches.png"
LAYER = "block2"
CHANNELS = 8
TOP = 8


def main(out: Path = OUT) -> Path:
    torch.manual_seed(0)
    model = load_model("digits_cnn")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atlas = scan_dataset(model, "mnist5k", Path(tmp) / "atlas", layers=[LAYER, "block4"], k=TOP)
        # the channels that fire most strongly on their best image: the clearest detectors
        best = sorted(range(atlas.channels[LAYER]), key=lambda c: -atlas.top(LAYER, c, 1)[0].value)
        tiles, captions = [], []
        for channel in sorted(best[:CHANNELS]):
            for patch in top_patches(atlas, model, LAYER, channel, TOP):
                tiles.append(patch.crop)
                captions.append(f"c{channel} #{patch.record.rank + 1}")
        box = patch.box
    title = (f"digits_cnn {LAYER} on MNIST-5k: top {TOP} patches ({box.height}x{box.width} px "
             f"receptive field) of {CHANNELS} channels, one row each")
    grid = image_grid(tiles, captions=captions, ncols=TOP, upscale="auto", tile_size=64,
                      title=title, caption_lines=1, font_size=11)
    return save_png(grid, out)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
