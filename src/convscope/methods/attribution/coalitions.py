"""What LIME and KernelSHAP share: groups of the input switched on and off, scored in chunks.

Both explain a score by a model that is linear in binary "group present" vectors z' (B, N, S):
LIME fits a weighted ridge regression (Ribeiro et al. 2016), KernelSHAP a least-squares fit with
the Shapley kernel under the efficiency constraint (Lundberg & Lee 2017). Everything else is the
same and lives here once:

* the groups: superpixels from scikit-image on the [0, 1] image (:func:`superpixels`; numpy only
  inside it), labels given by the caller, or for tables, signals and several inputs the feature
  groups of :func:`~convscope.methods.attribution.perturbation.feature_groups`;
* what an off group shows (``baseline``, the words of :mod:`.baselines`, plus ``"segment_mean"``:
  the group's own mean colour);
* the B * N composed inputs, built lazily ``batch_size`` at a time from the bits and the labels
  and scored on the shared inference fast path (:meth:`Coalitions.perturbed_scores`);
* the warning when the scores never varied (:mod:`.flat`).

A subclass says how it draws the bits and their weights (:meth:`Coalitions.draw`) and how it
fits the linear model (:meth:`Coalitions.fit`). Shapes: (B, C, H, W) -> (B, 1, H, W), each pixel
carrying its group's coefficient; :meth:`Coalitions.explain_superpixels` gives the coefficients
(B, S) with the labels (B, H, W).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ...errors import BadArgument, BadImage, check_choice, check_positive
from ...model import FastForward, Model, default_batch_size, fast_forward, guarded, target_indices
from ...model.structured import as_pixels, use_probabilities
from ...model.targets import reads_output
from ...types import OutputTarget, ProgressFn, Target
from .base import Attribution, repeat_target
from .baselines import SegmentBaseline, check_baseline
from .flat import warn_unvaried
from .perturbation import feature_groups

Segmentation = Literal["slic", "quickshift", "felzenszwalb"]
Score = Literal["probability", "logit"]


@dataclass(frozen=True)
class SuperpixelResult:
    """A linear model per image; ``weights[b, s]`` is 0 for s >= ``counts[b]``."""

    weights: Tensor  # (B, S) float64, S = the largest superpixel count in the batch
    segments: Tensor  # (B, H, W) long, labels 0 .. counts[b] - 1
    counts: Tensor  # (B,) long, superpixels per image
    intercept: Tensor  # (B,) float64 (KernelSHAP: the score with every group off)
    score: Tensor  # (B,) weighted R^2 of the linear model on its samples

    def pixel_map(self) -> Tensor:
        """(B, 1, H, W): every pixel carries the weight of its superpixel."""
        b, h, w = self.segments.shape
        return self.weights.gather(1, self.segments.flatten(1)).view(b, 1, h, w)


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


class Coalitions(Attribution):
    """Shared options and pipeline of the methods that switch input groups on and off (module notes)."""

    score: Score = "probability"
    clips = False  # superpixels are 2-D: a clip's coalitions would need space-time segments

    def __init__(self, model: Model, *, samples: int, segments: int, compactness: float,
                 segmentation: Segmentation, baseline: SegmentBaseline | Tensor, score: Score,
                 sigma: float, groups: Tensor | tuple[Tensor, ...] | None,
                 window: int | tuple[int, ...] | None, batch_size: int | None, seed: int,
                 progress: ProgressFn | None) -> None:
        super().__init__(model)
        check_positive("samples", samples, integer=True)
        check_positive("segments", segments, integer=True)
        check_positive("compactness", compactness)
        check_positive("sigma", sigma)
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        check_choice("segmentation", segmentation, Segmentation)
        check_choice("score", score, Score)
        self.baseline = check_baseline("baseline", baseline, get_args(SegmentBaseline))
        self.samples, self.segments, self.compactness = int(samples), int(segments), float(compactness)
        self.segmentation, self.score, self.sigma = segmentation, score, float(sigma)
        self.batch_size, self.seed, self.progress = batch_size, int(seed), progress
        self.groups, self.window = groups, window

    def draw(self, counts: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Bits (B, N, S) bool (off past an image's count) and each row's weight (B, N)."""
        raise NotImplementedError

    def fit(self, bits: Tensor, weights: Tensor, scores: Tensor,
            counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients (B, S), intercept (B,) and weighted R^2 (B,) from the scores (B, N)."""
        raise NotImplementedError

    def attribute(self, inputs: Tensor, target: Target) -> Tensor:
        result = self._explain(inputs, target, None)
        if self.packing is not None:  # each element carries its group's weight, (B, N)
            return result.weights.gather(1, result.segments).to(inputs.dtype)
        return result.pixel_map().to(inputs.dtype)

    def explain_superpixels(self, inputs: Tensor, target: Target = "top1", *,
                            segments: Tensor | None = None) -> SuperpixelResult:
        """The linear model per image; ``segments`` (B, H, W) or (H, W) replaces segmentation."""
        if not isinstance(inputs, Tensor) or inputs.ndim != 4 or not torch.isfinite(inputs).all():
            raise BadImage("inputs must be a finite (B, C, H, W) batch from model.preprocess")
        with guarded(self.model):
            return self._explain(inputs.detach(), target, segments)

    def _explain(self, inputs: Tensor, target: Target, given: Tensor | None) -> SuperpixelResult:
        softmax = use_probabilities(self.model, self.method_name, "score='probability'",
                                    self.score == "probability")
        fast = fast_forward(self.model)  # one folded copy per call, for every forward pass below
        logits = fast(inputs)
        fixed = target if reads_output(target) else target_indices(logits, target, self.model.labels)
        assert fixed is not None  # the class of the original image (also for "top1")
        segments = self._segments(inputs, given)
        counts = segments.flatten(1).amax(1) + 1
        bits, weights = self.draw(counts, inputs.device)
        hidden = self.hidden(inputs, segments)
        f = self.perturbed_scores(inputs, hidden, segments, bits, fixed, fast, softmax)
        warn_unvaried(self.method_name, f, logits, fixed, probabilities=softmax,
                      option="score='logit'")
        coef, intercept, r2 = self.fit(bits, weights, f, counts)
        return SuperpixelResult(coef, segments, counts, intercept, r2)

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

    def hidden(self, inputs: Tensor, segments: Tensor) -> Tensor:
        """What an off group shows, shaped as the inputs, in model-input space."""
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

    def perturbed_scores(self, inputs: Tensor, hidden: Tensor, segments: Tensor, bits: Tensor,
                         target: Tensor | OutputTarget, fast: FastForward | None = None,
                         softmax: bool | None = None) -> Tensor:
        """f(z) for every sample, (B, N): B * N composed images scored ``batch_size`` at a time;
        probabilities when ``softmax`` (default: as the ``score`` option says).

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
        softmax = self.score == "probability" if softmax is None else softmax
        scores = fast.scores(chunks(), repeat_target(target, n), softmax=softmax,
                             total=b * n, progress=self.progress)
        return scores.view(b, n)
