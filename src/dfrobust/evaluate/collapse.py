"""Is a detector a detector? The diagnosis of a collapsed one, for the leaderboard.

Adversarial training of AI-image detectors can collapse to a near-constant prediction (TRIM,
arXiv 2505.22604): the cues that tell fakes apart are small and fall inside the training
radius, so the least adversarial loss is to say the same thing for every image. Such a model
then looks robust (an attack cannot flip a constant) and ranks high on robust accuracy unless
it is marked. :func:`collapsed` marks it from its clean Table I metrics
(:func:`dfrobust.evaluate.metrics.detection_metrics`): a class recall near 0 (it calls nearly
everything the other class) or an AUROC near chance (its scores do not rank the classes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A class recall at or below this: the detector (nearly) never predicts that class.
MIN_RECALL = 0.05
#: An AUROC below this: the scores hardly separate real from fake.
MIN_AUROC = 0.6


@dataclass(frozen=True)
class Collapse:
    """A diagnosis: ``collapsed`` (also the truth value) and the reason in words (empty when healthy)."""

    collapsed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.collapsed


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None or value == "":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def collapsed(metrics: Mapping[str, Any], min_recall: float = MIN_RECALL, min_auroc: float = MIN_AUROC) -> Collapse:
    """Diagnose a collapsed detector from its clean metrics (``real_recall``, ``fake_recall``, ``auroc``).

    Collapsed when the real or the fake recall is at most ``min_recall`` or the AUROC is below
    ``min_auroc``; the reason names every symptom with its value. Missing metrics are not symptoms.

    >>> collapsed({"real_recall": 0.0, "fake_recall": 1.0, "auroc": 0.503}).reason
    'real recall 0.000 (predicts fake for nearly every real image); AUROC 0.503 < 0.6 (scores near chance)'
    """
    reasons = []
    for cls, other in (("real", "fake"), ("fake", "real")):
        recall = _num(metrics, f"{cls}_recall")
        if recall is not None and recall <= min_recall:
            reasons.append(f"{cls} recall {recall:.3f} (predicts {other} for nearly every {cls} image)")
    auroc = _num(metrics, "auroc")
    if auroc is not None and auroc < min_auroc:
        reasons.append(f"AUROC {auroc:.3f} < {min_auroc:g} (scores near chance)")
    return Collapse(bool(reasons), "; ".join(reasons))
