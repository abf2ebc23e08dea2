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
The B * N perturbed images are built on the fly, ``batch_size`` per forward pass, from the
(B, N, S) bits and the segment labels, so memory is that of one chunk. The bits are drawn before
any forward pass, so results depend on ``seed`` but not on ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ...errors import BadArgument, BadImage, check_choice, check_positive
from ...model import FastForward, Model, default_batch_size, fast_forward, guarded, target_indices
from ...model.structured import as_pixels, check_not_scores_only
from ...types import ProgressFn, Target, TargetFn
from ..registry import register
from .base import Attribution, repeat_target
from .baselines import SegmentBaseline, check_baseline
from .perturbation import feature_groups

Segmentation = Literal["slic", "quickshift", "felzenszwalb"]
Score = Literal["probability", "logit"]


@dataclass(frozen=True)
class LimeResult:
    """LIME's linear model per image; ``weights[b, s]`` is 0 for s >= ``counts[b]``."""

    weights: Tensor  # (B, S) float64, S = the largest superpixel count in the batch
    segments: Tensor  # (B, H, W) long, labels 0 .. counts[b] - 1
    counts: Tensor  # (B,) long, superpixels per image
    intercept: Tensor  # (B,) float64
    score: Tensor  # (B,) weighted R^2 of the linear model on its samples

    def pixel_map(self) -> Tensor:
        """(B, 1, H, W): every pixel carries the weight of its superpixel."""
        b, h, w = self.segments.shape
        return self.weights.gather(1, self.segments.flatten(1)).view(b, 1, h, w)


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


def superpixels(pixels: Tensor, *, method: Segmentation = "slic", segments: int = 50,
                compactness: float = 10.0, seed: int = 0) -> Tensor:
    """Superpixel labels (B, H, W) long, 0 .. S_b - 1 per image, from [0, 1] pixels (B, C, H, W).

    Runs scikit-image on the CPU (numpy inside, tensors at the border). SLIC takes ``segments``
    (approximate count) and ``compactness``; quickshift uses lime's settings (kernel_size=4,
    max_dist=200, ratio=0.2); felzenszwalb scale=100, sigma=0.5 and a minimum size of
    H * W / (2 * segments) pixels, so it makes at most about 2 * ``segments``.
    """
    check_choice("segmentation", method, Segmentation)
    from skimage import segmentation as sk

    rgb = pixels if pixels.shape[1] == 3 else pixels.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    images = rgb.detach().clamp(0, 1).permute(0, 2, 3, 1).to("cpu", torch.float64).numpy()
    h, w = pixels.shape[-2:]
    out = []
    for image in images:
        if method == "slic":
            labels = sk.slic(image, n_segments=int(segments), compactness=compactness, start_label=0)
        elif method == "quickshift":
            labels = sk.quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, rng=seed)
        else:
            labels = sk.felzenszwalb(image, scale=100, sigma=0.5,
                                     min_size=max(1, h * w // (2 * int(segments))))
        out.append(torch.from_numpy(labels.astype("int64")))
    return relabel(torch.stack(out).to(pixels.device))


def relabel(segments: Tensor) -> Tensor:
    """Labels of each image (B, H, W) renumbered to 0 .. S_b - 1, keeping their order."""
    return torch.stack([torch.unique(s, return_inverse=True)[1] for s in segments])


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
class Lime(Attribution):
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
        super().__init__(model)
        check_positive("samples", samples, integer=True)
        check_positive("segments", segments, integer=True)
        for name, value in (("compactness", compactness), ("kernel_width", kernel_width),
                            ("alpha", alpha), ("sigma", sigma)):
            check_positive(name, value)
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_choice("segmentation", segmentation, Segmentation)
        baseline = check_baseline("baseline", baseline, get_args(SegmentBaseline))  # type: ignore[assignment]
        check_choice("score", score, Score)
        self.samples, self.segments, self.compactness = int(samples), int(segments), float(compactness)
        self.segmentation, self.baseline, self.score = segmentation, baseline, score
        self.kernel_width, self.alpha, self.sigma = float(kernel_width), float(alpha), float(sigma)
        self.batch_size, self.seed, self.progress = batch_size, int(seed), progress
        self.groups, self.window = groups, window

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        result = self._explain(inputs, target, None)
        if self.packing is not None:  # each element carries its group's weight, (B, N)
            return result.weights.gather(1, result.segments).to(inputs.dtype)
        return result.pixel_map().to(inputs.dtype)

    def explain_superpixels(self, inputs: Tensor, target: Target = "top1", *,
                            segments: Tensor | None = None) -> LimeResult:
        """The linear model per image; ``segments`` (B, H, W) or (H, W) replaces segmentation."""
        if not isinstance(inputs, Tensor) or inputs.ndim != 4 or not torch.isfinite(inputs).all():
            raise BadImage("inputs must be a finite (B, C, H, W) batch from model.preprocess")
        with guarded(self.model):
            return self._explain(inputs.detach(), target, segments)

    def _segments(self, inputs: Tensor, given: Tensor | None) -> Tensor:
        if self.packing is not None:  # feature groups, the same for every sample, (B, N)
            groups = feature_groups(self.packing, inputs, self.groups, self.window)
            return groups.expand(inputs.shape[0], -1)
        if given is None:
            return superpixels(as_pixels(self.model, inputs), method=self.segmentation,
                               segments=self.segments, compactness=self.compactness, seed=self.seed)
        b, _, h, w = inputs.shape
        if given.is_floating_point() or given.is_complex() or given.shape[-2:] != (h, w) or \
                given.ndim not in (2, 3) or (given.ndim == 3 and given.shape[0] not in (1, b)):
            raise BadArgument(f"segments of shape {tuple(given.shape)} {given.dtype}: expected "
                              f"integer labels of shape ({b}, {h}, {w}) or ({h}, {w})")
        return relabel(given.to(inputs.device).long().expand(b, h, w))

    def hidden(self, inputs: Tensor, segments: Tensor, counts: Tensor) -> Tensor:
        """What an off superpixel shows, (B, C, H, W) in model-input space."""
        baseline = self.baseline
        if baseline == "segment_mean" and self.packing is not None:
            baseline = "mean"  # a table's feature is its own group: its own mean would hide nothing
        if baseline != "segment_mean":
            return self.baseline_for(inputs, baseline, sigma=self.sigma, seed=self.seed)
        # per-superpixel mean: the affine normalization commutes with averaging
        return self._group_mean(inputs, segments[:, None])

    @staticmethod
    def _group_mean(inputs: Tensor, segments: Tensor) -> Tensor:
        """Each element replaced by the per-channel mean of its segment: (B, C, *S) and (B, 1, *S)."""
        b, c = inputs.shape[:2]
        shape = inputs.shape
        inputs, segments = inputs.flatten(2), segments.flatten(2)
        index = segments.expand(b, c, -1)
        counts = int(segments.max()) + 1
        sums = inputs.new_zeros(b, c, counts).scatter_add_(2, index, inputs)
        sizes = torch.zeros(b, 1, counts, dtype=inputs.dtype, device=inputs.device)
        sizes.scatter_add_(2, index[:, :1], torch.ones_like(inputs[:, :1]))
        return (sums / sizes.clamp(min=1)).gather(2, index).view(shape)

    def draw(self, counts: Tensor, device: torch.device) -> Tensor:
        """Bits (B, N, S) bool, first row all-on; bits past an image's count are off."""
        gen = torch.Generator().manual_seed(self.seed)
        n, size = self.samples, int(counts.max())
        bits = torch.zeros(len(counts), n, size, dtype=torch.bool)
        for b, count in enumerate(counts.tolist()):
            bits[b, :, :count] = torch.randint(0, 2, (n, count), generator=gen, dtype=torch.bool)
            bits[b, 0, :count] = True
        return bits.to(device)

    def _explain(self, inputs: Tensor, target: Target, given: Tensor | None) -> LimeResult:
        if self.score == "probability":
            check_not_scores_only(self.model, "lime", "score='probability'")
        fast = fast_forward(self.model)  # one folded copy per call, for every forward pass below
        fixed = target if callable(target) else target_indices(fast(inputs), target, self.model.labels)
        assert fixed is not None  # the class of the original image (also for "top1")
        segments = self._segments(inputs, given)
        counts = segments.flatten(1).amax(1) + 1
        bits = self.draw(counts, inputs.device)
        hidden = self.hidden(inputs, segments, counts)
        f = self.perturbed_scores(inputs, hidden, segments, bits, fixed, fast)
        coef, intercept, r2 = weighted_ridge(bits, f, kernel_weights(bits, counts, self.kernel_width),
                                             self.alpha)
        return LimeResult(coef, segments, counts, intercept, r2)

    def perturbed_scores(self, inputs: Tensor, hidden: Tensor, segments: Tensor, bits: Tensor,
                         target: Tensor | TargetFn, fast: FastForward | None = None) -> Tensor:
        """f(z) for every sample, (B, N): B * N composed images scored ``batch_size`` at a time.

        Runs on the shared inference fast path (a BatchNorm-folded copy of the model, made once
        per call); the composed chunks are generated lazily, so only one chunk lives at a time.
        """
        b, n = inputs.shape[0], bits.shape[1]
        keep_shape = (-1, 1, *inputs.shape[2:]) if self.packing is None else (-1, inputs.shape[1])
        size = self.batch_size or default_batch_size(inputs.device)
        flat = segments.flatten(1)

        def chunks() -> Iterator[Tensor]:
            for start in range(0, b * n, size):
                rows = torch.arange(start, min(start + size, b * n), device=inputs.device)
                img, k = rows // n, rows % n
                keep = bits[img, k].gather(1, flat[img]).view(keep_shape)
                if b == 1:  # broadcast instead of copying the image per row
                    yield torch.where(keep, inputs, hidden)
                else:
                    yield torch.where(keep, inputs[img], hidden[img])

        fast = fast or fast_forward(self.model)
        scores = fast.scores(chunks(), repeat_target(target, n), softmax=self.score == "probability",
                             total=b * n, progress=self.progress)
        return scores.view(b, n)
