"""Issue 20's detection goals on the shipped ``digits_detector`` (one held-out 128x128 scene).

* ``drise-floor``: ``explain(..., method='drise', masks=N)`` against N forwards of the detector
  on the same masked-size batch (``batch_size`` rows per pass, as D-RISE runs them): what any
  D-RISE must pay.
* ``gradcam-detection-floor``: Grad-CAM of one detection (a ``Detection`` target) against one
  forward and one backward of that detection's score.
"""

from __future__ import annotations

from typing import Any

import torch

BATCH = 64


def _scene() -> tuple[Any, torch.Tensor, Any]:
    from convscope import load_model
    from convscope.data.digit_scenes import make_scene
    from convscope.model.boxes import tlbr_to_xyxy
    from convscope.types import Detection

    model = load_model("digits_detector")
    scene = make_scene("heldout", 5)
    box = tuple(tlbr_to_xyxy(scene.boxes)[0].tolist())
    return model, scene.image[None], Detection(box, int(scene.labels[0]))  # type: ignore[arg-type]


def group_detection(ctx: Any) -> list[Any]:
    from convscope import explain
    from convscope.model import guarded, select

    from .check import ratio
    from .perturbation import _forwards

    model, x, target = _scene()
    masks = ctx.size(512, 128)
    drise = ctx.subject(lambda: explain(model, x, method="drise", target=target, masks=masks,
                                        batch_size=BATCH))
    floor = _forwards(model, x.expand(masks, -1, -1, -1).contiguous(), BATCH)

    def forward_backward() -> None:
        with guarded(model):
            inputs = x.clone().requires_grad_(True)
            torch.autograd.grad(select(model(inputs), target).sum(), inputs)

    gradcam = ctx.subject(lambda: explain(model, x, method="gradcam", target=target))
    with guarded(model):
        turns = ctx.turns([drise, floor, gradcam, forward_backward])
    return [ratio("drise-floor", turns, 0, 1), ratio("gradcam-detection-floor", turns, 2, 3)]
