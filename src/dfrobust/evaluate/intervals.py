"""Confidence intervals for rates: every rate the report shows carries its n and a Wilson 95% interval."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (``(nan, nan)`` when ``n`` is 0).

    >>> tuple(round(v, 3) for v in wilson_interval(0, 20))
    (0.0, 0.161)
    """
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at k = 0 and k = n, where rounding would leave p itself just outside the interval
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def clopper_pearson_lower(successes: ArrayLike, n: ArrayLike, alpha: float) -> np.ndarray:
    """One-sided ``1 - alpha`` Clopper-Pearson lower bound of a binomial proportion, elementwise.

    The ``alpha`` quantile of ``Beta(k, n - k + 1)`` (0 when ``k == 0``): the lower end of the
    two-sided ``1 - 2 alpha`` interval, as Cohen et al.'s ``_lower_confidence_bound``.
    """
    from scipy import stats

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = stats.beta.ppf(alpha, np.maximum(k, 1), n - k + 1)
    return np.where(k > 0, bound, 0.0)
