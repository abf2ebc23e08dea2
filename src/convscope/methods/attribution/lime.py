"""LIME on superpixels: a weighted linear model of the class score on superpixel presence.

Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?", Sec. 3: the explanation is
xi(x) = argmin_g L(f, g, pi_x) + Omega(g) (Eq. 1) with the locally weighted square loss
L = sum_z pi_x(z) (f(z) - g(z'))^2 (Eq. 2), g linear in the binary "superpixel present" vector z'
and pi_x(z) = exp(-D(x, z)^2 / sigma^2) (Sec. 3.3). As in the ``lime`` package (0.2.0.1):

* superpixels come from scikit-image (SLIC here by default, quickshift in ``lime``) computed on
  the [0, 1] image (``model.denormalize`` of the input). scikit-image needs numpy, so the image
  goes to the CPU as a numpy array inside :func:`superpixels` only; labels come back as a tensor;
* ``samples`` random on/off vectors z' (B, N, S), each bit a fair coin from a seeded
  ``torch.Generator``; the first sample is all-on (the image itself);
* an "off" superpixel shows the baseline: ``"segment_mean"`` its own mean colour (what ``lime``
  does with its default ``hide_color=None``), ``"mean"`` model-input zero (Captum's default: the
  dataset mean colour), ``"black"`` pixel value 0, ``"blur"`` a Gaussian blur of the input;
* D is the cosine distance between z' and the all-on vector, 1 - sqrt(|z'| / S) in closed form,
  and the kernel is lime's sqrt(exp(-D^2 / w^2)) with w = ``kernel_width`` = 0.25;
* g is ridge regression with intercept and penalty alpha = 1 (sklearn ``Ridge`` as in lime),
  solved in closed form in float64 on the weighted, centred data; its weighted R^2 is reported;
* f is the target's softmax probability (``score="probability"``, what lime explains) or its
  logit. A callable target receives probabilities when ``score="probability"``.

Beyond images (tables, signals, several inputs; see :mod:`convscope.model.structured`) the
superpixels are feature groups (``groups``, default per
:func:`~convscope.methods.attribution.perturbation.feature_groups`: every table feature, blocks
of a signal), an off group shows the baseline ("segment_mean", the default, means "mean" there:
model-input 0, since a table feature's own mean would hide nothing), and each element gets its
group's weight.

Shapes: inputs (B, C, H, W) -> map (B, 1, H, W), each pixel carrying its superpixel's weight;
:meth:`Lime.explain_superpixels` gives per-superpixel weights (B, S) and the segments (B, H, W).
The groups, the hidden values and the chunked scoring are shared with KernelSHAP
(:mod:`.coalitions`). The bits are drawn before any forward pass, so results depend on ``seed``
but not on ``batch_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import check_positive
from ...model import Model
from ...types import ProgressFn
from ..registry import register
from .baselines import SegmentBaseline
from .coalitions import Coalitions, Score, Segmentation, SuperpixelResult

LimeResult = SuperpixelResult
"""LIME's linear model per image (the one result type of :mod:`.coalitions`)."""


def top_superpixel_mask(result: LimeResult, k: int = 5, *, positive_only: bool = True) -> Tensor:
    """(B, 1, H, W) bool: the ``k`` superpixels with the largest weights (lime's picture).

    As ``lime``'s ``get_image_and_mask(positive_only=True)``: only weights > 0, largest first, so
    fewer than ``k`` may be shown; ``positive_only=False`` takes the ``k`` largest magnitudes.
    ``pixels * mask`` is the image with only those superpixels shown.
    """
    check_positive("k", k, integer=True)
    score = result.weights if positive_only else result.weights.abs()
    valid = torch.arange(score.shape[1], device=score.device) < result.counts.to(score.device)[:, None]
    score = score.masked_fill(~valid, float("-inf"))
    top = score.topk(min(int(k), score.shape[1]), dim=1)
    chosen = torch.zeros_like(valid)
    chosen.scatter_(1, top.indices, top.values > 0 if positive_only else valid.gather(1, top.indices))
    b, h, w = result.segments.shape
    return chosen.gather(1, result.segments.flatten(1)).view(b, 1, h, w)


def kernel_weights(bits: Tensor, counts: Tensor, width: float) -> Tensor:
    """lime's sqrt(exp(-D^2 / w^2)) with D the cosine distance of bits (B, N, S) to all-on.

    For a binary z' with k of S bits on, cos(z', 1) = k / sqrt(k S); an all-off z' has distance 1
    (sklearn's convention for a zero vector, which lime uses).
    """
    on = bits.sum(-1, dtype=torch.float64)
    distance = 1 - torch.sqrt(on / counts.to(on)[:, None])
    return torch.exp(-distance.square() / width**2).sqrt()


def weighted_ridge(x: Tensor, y: Tensor, w: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor]:
    """min_b,c sum_n w_n (y_n - x_n b - c)^2 + alpha |b|^2 per batch row, as sklearn ``Ridge``.

    x (B, N, S), y (B, N), w (B, N) -> coefficients (B, S), intercept (B,), weighted R^2 (B,),
    float64. The intercept is not penalized: centring with the weighted means removes it
    (sklearn does the same), leaving (Xc^T W Xc + alpha I) b = Xc^T W yc.
    """
    x, y, w = x.double(), y.double(), w.double()
    total = w.sum(1, keepdim=True)
    x_mean = (w[..., None] * x).sum(1) / total
    y_mean = (w * y).sum(1, keepdim=True) / total
    xc, yc = x - x_mean[:, None], y - y_mean
    gram = xc.transpose(1, 2) @ (w[..., None] * xc)
    gram = gram + alpha * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    coef = torch.linalg.solve(gram, xc.transpose(1, 2) @ (w * yc)[..., None]).squeeze(-1)
    intercept = y_mean.squeeze(1) - (x_mean * coef).sum(1)
    residual = (w * (y - (x @ coef[..., None]).squeeze(-1) - intercept[:, None]).square()).sum(1)
    spread = (w * yc.square()).sum(1)
    perfect = torch.where(residual == 0, 1.0, 0.0).to(spread)  # sklearn's r2_score for constant y
    r2 = torch.where(spread > 0, 1 - residual / spread.clamp(min=1e-300), perfect)
    return coef, intercept, r2



@register("lime", family="perturbation", signed=True)
class Lime(Coalitions):
    """LIME (Ribeiro et al. 2016): weighted ridge regression of the score on superpixel presence.

    Options: ``samples`` random on/off superpixel patterns (the first all-on), ``segments``
    (approximate SLIC count) and ``compactness``, ``segmentation`` algorithm, ``baseline`` shown
    for an off superpixel ("segment_mean": the superpixel's own mean colour, as lime; or "mean",
    "black", "blur" with ``sigma`` pixels, "uniform", a tensor: see :mod:`.baselines`),
    ``kernel_width`` of the exponential kernel on cosine distance,
    ``alpha`` ridge penalty, ``score`` explained ("probability" as lime, or "logit"),
    ``batch_size`` perturbed images per forward pass, ``seed``.
    """

    def __init__(
        self,
        model: Model,
        *,
        samples: int = 1000,
        segments: int = 50,
        compactness: float = 10.0,
        segmentation: Segmentation = "slic",
        baseline: SegmentBaseline | Tensor = "segment_mean",
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        score: Score = "probability",
        sigma: float = 10.0,
        groups: Tensor | tuple[Tensor, ...] | None = None,
        window: int | tuple[int, ...] | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, samples=samples, segments=segments, compactness=compactness,
                         segmentation=segmentation, baseline=baseline, score=score, sigma=sigma,
                         groups=groups, window=window, batch_size=batch_size, seed=seed,
                         progress=progress)
        check_positive("kernel_width", kernel_width)
        check_positive("alpha", alpha)
        self.kernel_width, self.alpha = float(kernel_width), float(alpha)

    def draw(self, counts: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Bits (B, N, S) bool, first row all-on, bits past an image's count off; lime's kernel
        weights of each row (B, N)."""
        gen = torch.Generator().manual_seed(self.seed)
        n, size = self.samples, int(counts.max())
        bits = torch.zeros(len(counts), n, size, dtype=torch.bool)
        for b, count in enumerate(counts.tolist()):
            bits[b, :, :count] = torch.randint(0, 2, (n, count), generator=gen, dtype=torch.bool)
            bits[b, 0, :count] = True
        bits = bits.to(device)
        return bits, kernel_weights(bits, counts, self.kernel_width)

    def fit(self, bits: Tensor, weights: Tensor, scores: Tensor,
            counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return weighted_ridge(bits, scores, weights, self.alpha)
