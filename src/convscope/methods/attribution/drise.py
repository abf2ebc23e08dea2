"""D-RISE: detector saliency from randomly masked copies of the image.

Petsiuk, Jain, Manjunatha, Lee, Hoffman, Rodriguez, Saenko 2021, "Black-box Explanation of Object
Detectors via Saliency Maps", Sec. 3: N random masks ``M_i`` (RISE's, :class:`.perturbation.RISE`:
``cells x cells`` grids kept with probability ``p``, upsampled and shifted); each masked copy
``x . M_i`` is run through the detector, and its detections ``D_i`` are scored against the
target detection ``d_t`` by the similarity ``w_i = max_{d_j in D_i} IoU(L_t, L_j) x
cos(P_t, P_j) x O_j`` (Eq. 3, :func:`convscope.model.detections.drise_similarity`); the map is
the weighted sum ``S = sum_i w_i M_i`` (Eq. 4), divided by ``N p`` as RISE's. The target is a
:class:`convscope.types.Detection` (its box need not be one of the model's detections: any box
and label can be asked, as in the paper). (B, C, H, W) -> (B, 1, H, W), non-negative.

The masked copies run in chunks of ``batch_size`` through :class:`convscope.model.FastForward`
(folded BatchNorm, inference mode): N masks cost N batched forwards and the masks' making.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ...errors import BadTarget
from ...model import FastForward, Model
from ...model.detections import bind_label, drise_similarity
from ...types import Detection, ProgressFn, Target
from ..registry import register
from .baselines import BaselineName
from .flat import warn_unvaried
from .perturbation import RISE


@register("drise", family="perturbation")
class DRISE(RISE):
    """D-RISE (Petsiuk et al. 2021): RISE's masks weighted by the masked copies' detection similarity.

    Options as RISE's (``masks`` N, ``cells``, ``p``, ``baseline`` "black" (the paper) / "mean" /
    "blur" / "uniform" / tensor, ``seed``, ``batch_size``), except ``output``: the weight is always
    the detection similarity. The target must be a :class:`~convscope.types.Detection`.
    """

    detections_only: ClassVar[bool] = True
    """Explains a detector's detections only: left out of ``"all"`` (reports, leaderboards)."""
    clips: ClassVar[bool] = False
    """Detectors take images; a clip is refused in one line."""

    def __init__(
        self,
        model: Model,
        *,
        masks: int = 1000,
        cells: int = 16,
        p: float = 0.5,
        baseline: BaselineName | Tensor = "black",
        sigma: float = 10.0,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, masks=masks, cells=cells, p=p, baseline=baseline, output="logit",
                         sigma=sigma, seed=seed, batch_size=batch_size, progress=progress)

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        if not isinstance(target, Detection):
            raise BadTarget(f"drise explains one detection, not the target {target!r}: give "
                            "target=Detection(box, label) (CLI: --box x0,y0,x1,y1 --target LABEL)")
        target = bind_label(target, self.model.labels)
        batch, _, height, width = inputs.shape
        grids, shifts = (t.to(inputs.device) for t in self.sample(height, width))
        fast = FastForward(self.model, rows=batch * self.masks)
        fill = self.fill(inputs)
        saliency = torch.zeros(batch, 1, height, width, device=inputs.device, dtype=inputs.dtype)
        low = torch.full((batch,), float("inf"), device=inputs.device, dtype=torch.float64)
        high = torch.full_like(low, float("-inf"))
        for image, masks, masked in self.masked(inputs, fill, grids, shifts):
            weights = drise_similarity(fast(masked), target).to(inputs.dtype)
            saliency.index_add_(0, image, weights.view(-1, 1, 1, 1) * masks)
            low.scatter_reduce_(0, image, weights.double(), "amin")
            high.scatter_reduce_(0, image, weights.double(), "amax")
        warn_unvaried(self.method_name, torch.stack([low, high], 1), None, target, probabilities=False,
                      count=self.masks)
        return (saliency / (self.masks * self.p)).to(inputs.dtype)
