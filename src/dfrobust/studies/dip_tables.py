"""The DIP study's tables from per-image scores: Table III (overall), Table IV (per category), the sweep of T.

Pure functions of labels and P(real) scores, so they can be checked on hand-made numbers.
A *method* is a way of scoring each image (``baseline`` = the undefended classifier, ``dip``
= the output at iteration T, ``dip-window`` = the window average around T, ``dip-ema`` = the
exponential average of outputs at T, ``jpeg``/``blur`` = the cheap transforms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dfrobust.defenses.dip_sampling import CLEAN_FAKE, CLEAN_REAL
from dfrobust.evaluate.metrics import accuracy_at, detection_metrics

TABLE3_COLUMNS = ["method", "threshold", "n", "accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall"]
#: The paper's T range (2,500 .. 7,500 of 10,000 iterations, every 500).
PAPER_SWEEP = tuple(range(2500, 7501, 500))
PAPER_ITERATIONS = 10_000


def window_mean(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Centred moving average along the last axis over ``window`` samples (truncated at the ends).

    Sample ``i`` averages samples ``i - window//2 .. i + window - window//2 - 1`` that exist,
    as the paper's Fig 6 (a window of 10 centred at each iteration).
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    if n == 0 or window <= 1:
        return values.copy()
    csum = np.concatenate([np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)], axis=-1)
    idx = np.arange(n)
    lo = np.clip(idx - window // 2, 0, n)
    hi = np.clip(idx + window - window // 2, 0, n)
    return (csum[..., hi] - csum[..., lo]) / (hi - lo)


def table3_rows(labels: Sequence[int], scores: Mapping[str, Sequence[float]], thresholds: Sequence[float]) -> list[dict]:
    """Table III: one row per (method, threshold) with accuracy, AUROC, precision and recall per class."""
    rows = []
    for method, p in scores.items():
        for thr in thresholds:
            m = detection_metrics(np.asarray(labels), np.asarray(p, dtype=float), thr)
            rows.append({"method": method, **{k: m[k] for k in TABLE3_COLUMNS[1:]}})
    return rows


def category_groups(categories: Sequence[str], order: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Row masks of Table IV: each category (those in ``order`` first, empty ones included), then the aggregates.

    Aggregates: ``perturbed/fake-wrong`` and ``perturbed/fake-correct`` (all attacks),
    ``all-but-fake-wrong`` (the paper's "elsewhere") and ``all``.
    """
    cats = np.asarray(categories, dtype=object)
    groups = {c: cats == c for c in dict.fromkeys([*order, *categories])}
    perturbed = np.array([c not in (CLEAN_FAKE, CLEAN_REAL) for c in cats], dtype=bool)
    wrong = perturbed & np.array([c.endswith("/fake-wrong") for c in cats], dtype=bool)
    groups["perturbed/fake-wrong"] = wrong
    groups["perturbed/fake-correct"] = perturbed & ~wrong
    groups["all-but-fake-wrong"] = ~wrong
    groups["all"] = np.ones(len(cats), dtype=bool)
    return groups


def table4_rows(
    categories: Sequence[str],
    labels: Sequence[int],
    scores: Mapping[str, Sequence[float]],
    thresholds: Sequence[float],
    requested: int | None = None,
    order: Sequence[str] = (),
) -> list[dict]:
    """Table IV: accuracy per category (and aggregate) for every method at every threshold.

    Columns: ``category, n, requested`` then ``<method>@<threshold>`` accuracies (NaN for an
    empty category). ``order`` lists the study's categories, so that empty ones get a row too.
    """
    y = np.asarray(labels, dtype=int)
    arrays = {m: np.asarray(p, dtype=float) for m, p in scores.items()}
    rows = []
    real_categories = {*order, *categories}
    for name, mask in category_groups(categories, order).items():
        row: dict = {"category": name, "n": int(mask.sum()), "requested": requested if name in real_categories and requested else ""}
        for method, p in arrays.items():
            for thr in thresholds:
                row[f"{method}@{thr:g}"] = accuracy_at(y[mask], p[mask], thr)
        rows.append(row)
    return rows


def sweep_points(total_iterations: int, end: int, record_every: int) -> list[int]:
    """The paper's T = 2,500 .. 7,500 (step 500) scaled to ``total_iterations``, on the recording grid, up to ``end``."""
    scale = total_iterations / PAPER_ITERATIONS
    points = {max(record_every, int(round(t * scale / record_every)) * record_every) for t in PAPER_SWEEP}
    return sorted(t for t in points if t <= end)


def sweep_rows(
    iterations: Sequence[int],
    labels: Sequence[int],
    curves: Mapping[str, np.ndarray],
    points: Sequence[int],
    thresholds: Sequence[float],
) -> list[dict]:
    """Accuracy (and AUROC) per T: ``curves`` maps a method to its ``N x R`` P(real) over the recorded iterations."""
    index = {t: i for i, t in enumerate(iterations)}
    y = np.asarray(labels, dtype=int)
    rows = []
    for t in points:
        if t not in index:
            continue
        row: dict = {"iteration": t}
        for method, curve in curves.items():
            p = np.asarray(curve, dtype=float)[:, index[t]]
            for thr in thresholds:
                row[f"{method}@{thr:g}"] = accuracy_at(y, p, thr)
            row[f"{method}_auroc"] = detection_metrics(y, p, thresholds[0])["auroc"]
        rows.append(row)
    return rows
