"""Bootstrap confidence intervals over images, and the paired test of two methods' difference.

A leaderboard compares means over a sample of images; with 50 images two methods can differ by
chance. Resampling the images with replacement (Efron & Tibshirani 1993, ch. 13: the percentile
interval) gives each mean a 95% interval without assuming normal scores (pointing-game scores
are 0 or 1). Two methods are scored on the SAME images, so their difference is tested paired:
the mean of the per-image differences is resampled with the same draws, and when its interval
holds 0 the two are indistinguishable at this sample size. That is sharper than asking whether
the two marginal intervals overlap, which ignores that an image hard for one method is
usually hard for the other.

Images whose score is not finite (a metric undefined for an all-zero map) are left out of the
means they would poison, per method and per pair. One seeded draw of indices serves every
method and metric, so the result is a function of the scores and the seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over images with its bootstrap percentile interval; ``n`` finite scores."""

    mean: float
    low: float
    high: float
    n: int

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


def resample_indices(count: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, count) image indices drawn with replacement, from a seeded generator."""
    return np.random.default_rng(seed).integers(0, max(count, 1), size=(resamples, count))


def interval(values: np.ndarray, draws: np.ndarray, confidence: float = 0.95) -> Interval:
    """The mean of ``values`` (N,) and its percentile interval over ``draws`` (R, N); NaN when
    no value is finite."""
    finite = np.isfinite(values)
    if not finite.any():
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    masked = np.where(finite, values, 0.0)
    weights = finite[draws].sum(1)
    means = masked[draws].sum(1) / np.maximum(weights, 1)
    means = means[weights > 0]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values[finite].mean()), float(low), float(high), int(finite.sum()))


def paired_difference(a: np.ndarray, b: np.ndarray, draws: np.ndarray, confidence: float = 0.95
                      ) -> Interval:
    """The mean of ``a - b`` over the images where both are finite, with its interval."""
    diff = a - b
    return interval(np.where(np.isfinite(a) & np.isfinite(b), diff, np.nan), draws, confidence)
