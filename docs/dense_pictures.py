"""The README's picture of the two dense digit models: ``python docs/dense_pictures.py``.

The first four held-out ``digit_scenes`` canvases with three or more digits (digits no model
trained on), each shown twice:
``digits_detector``'s boxes with label and score, then ``digits_segmenter``'s class map over the
scene (background left black). Enlarged 3x (nearest neighbour) so the labels can be read.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

import convscope
from convscope.data.digit_scenes import BACKGROUND, DigitScenes
from convscope.model.boxes import xyxy_to_tlbr
from convscope.render import draw_boxes, image_grid, save_png, segmentation_overlay

OUT = Path(__file__).parent / "images" / "digit_scenes.png"
CROWDED = 3
ZOOM = 3


def main() -> None:
    detector = convscope.load_model("digits_detector")
    segmenter = convscope.load_model("digits_segmenter")
    scenes = DigitScenes("heldout", n=100)
    batch = scenes.batch([i for i in range(100) if len(scenes.scene(i).labels) >= CROWDED][:4])
    with torch.no_grad():
        found = detector(detector.preprocess(batch.images))
        classes = segmenter(segmenter.preprocess(batch.images)).argmax(1)
    tiles, captions = [], []
    for i, image in enumerate(batch.images):
        big = F.interpolate(image[None], scale_factor=ZOOM, mode="nearest")[0]
        boxes = xyxy_to_tlbr(found[i]["boxes"]).flip(0) * ZOOM  # best last: drawn on top
        names = [f"{int(lab)} {float(s):.2f}" for lab, s in zip(found[i]["labels"], found[i]["scores"])]
        tiles.append(draw_boxes(big.expand(3, -1, -1), boxes, names[::-1], color=(255, 200, 0)))
        labels = sorted(found[i]["labels"].tolist())
        captions.append(f"detector: {labels}, truth {sorted(batch.labels[i].tolist())}")
        big_classes = F.interpolate(classes[i][None, None].float(), scale_factor=ZOOM, mode="nearest")
        tiles.append(segmentation_overlay(big, big_classes[0, 0].long(), background=BACKGROUND))
        shown = sorted(set(classes[i].unique().tolist()) - {BACKGROUND})
        captions.append(f"segmenter: {shown}")
    save_png(image_grid(tiles, captions=captions, ncols=4), OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
