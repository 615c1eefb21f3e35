"""95 % confidence intervals for the scores we report.

- `bootstrap_interval`: percentile bootstrap of a mean over items (questions or test images), for any
  per-item score; what the linear probe and the demo print.
- `wilson_interval`: the Wilson score interval of a proportion (closed form; used where only counts are
  known).
- `t_interval`: mean and two-sided Student-t half-width over a few runs (seeds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
# Two-sided 95 % Student-t quantiles by degrees of freedom (n - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of the mean of `values` (resampling items with replacement).

    Deterministic for a given `seed`; an empty input gives (nan, nan)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)  # [resamples]
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion `successes / total` ((nan, nan) when total is 0)."""
    if total <= 0:
        return math.nan, math.nan
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and two-sided 95 % Student-t half-width over runs (nan half-width for fewer than 2 values; nan both
    when there are no values or one is nan: a metric that had nothing to score)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, T95.get(len(values) - 1, Z95) * statistics.stdev(values) / math.sqrt(len(values))
