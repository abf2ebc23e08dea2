"""Bootstrap intervals and the paired difference test, against what statistics says they must be."""

from __future__ import annotations

import math

import numpy as np

from convscope.methods.evaluation.bootstrap import interval, paired_difference, resample_indices


def test_interval_of_a_normal_sample_matches_the_normal_theory_interval() -> None:
    values = np.random.default_rng(1).normal(2.0, 3.0, size=400)
    got = interval(values, resample_indices(400, 4000, seed=0))
    half = 1.96 * values.std(ddof=1) / math.sqrt(400)  # the textbook 95% interval of a mean
    assert got.mean == values.mean() and got.n == 400
    assert abs((got.high - got.low) / 2 - half) < 0.1 * half
    assert abs((got.high + got.low) / 2 - values.mean()) < 0.1 * half


def test_constant_scores_have_no_width_and_nan_scores_are_left_out() -> None:
    draws = resample_indices(5, 200, seed=3)
    assert interval(np.full(5, 0.25), draws).low == interval(np.full(5, 0.25), draws).high == 0.25
    partly = interval(np.array([1.0, np.nan, 1.0, 1.0, np.nan]), draws)
    assert (partly.mean, partly.low, partly.high, partly.n) == (1.0, 1.0, 1.0, 3)
    assert math.isnan(interval(np.full(5, np.nan), draws).mean)


def test_paired_test_tells_a_constant_shift_apart_even_when_the_intervals_overlap() -> None:
    base = np.random.default_rng(2).normal(0, 1, size=30)
    draws = resample_indices(30, 2000, seed=0)
    a, b = interval(base + 0.1, draws), interval(base, draws)
    assert a.low < b.high  # the marginal intervals overlap ...
    diff = paired_difference(base + 0.1, base, draws)
    assert not diff.holds(0.0) and math.isclose(diff.mean, 0.1)  # ... the paired test does not
    assert paired_difference(base, base.copy(), draws).holds(0.0)


def test_draws_are_seeded() -> None:
    assert (resample_indices(7, 10, seed=4) == resample_indices(7, 10, seed=4)).all()
    assert not (resample_indices(7, 10, seed=4) == resample_indices(7, 10, seed=5)).all()
