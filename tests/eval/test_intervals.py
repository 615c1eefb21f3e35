"""Confidence intervals: known values, coverage of a simulated proportion, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llama3med.eval.intervals import bootstrap_interval, t_interval, wilson_interval


def test_wilson_matches_the_textbook_values() -> None:
    # 81 of 100: the Wilson score 95 % interval is (0.7222, 0.8749).
    low, high = wilson_interval(81, 100)
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bootstrap_is_close_to_wilson_and_deterministic() -> None:
    correct = np.array([1.0] * 75 + [0.0] * 25)
    low, high = bootstrap_interval(correct, seed=3)
    assert (low, high) == bootstrap_interval(correct, seed=3)
    w_low, w_high = wilson_interval(75, 100)
    assert abs(low - w_low) < 0.03 and abs(high - w_high) < 0.03
    assert low < 0.75 < high
    assert bootstrap_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_bootstrap_covers_the_true_proportion_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(200):
        sample = (rng.random(120) < 0.7).astype(float)
        low, high = bootstrap_interval(sample, resamples=500, seed=trial)
        hits += low <= 0.7 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_t_interval_over_seeds() -> None:
    mean, half = t_interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9)
    assert half == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(t_interval([0.5])[1])
