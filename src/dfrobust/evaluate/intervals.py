"""Confidence intervals of a proportion: Wilson (for reported rates) and Clopper-Pearson (for certificates)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (``(0.0, 1.0)`` when ``n == 0``).

    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_lower(successes: ArrayLike, n: ArrayLike, alpha: float) -> np.ndarray:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound of a binomial proportion, elementwise.

    The ``alpha`` quantile of ``Beta(k, n - k + 1)`` (0 when ``k == 0``): the lower end of the
    two-sided ``1 - 2 alpha`` interval, as Cohen et al.'s ``_lower_confidence_bound``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = stats.beta.ppf(alpha, np.maximum(k, 1), n - k + 1)
    return np.where(k > 0, bound, 0.0)
