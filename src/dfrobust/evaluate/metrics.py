"""Detection metrics of the paper's Tables I and III, and the field's AP and EER, computed with scikit-learn.

Scores are ``P(real)`` (the paper's convention). The field (DeepfakeBench) reports AUC, AP and
EER with fake as the positive class; every key says which class is positive, and
:data:`CONVENTIONS` states it in words for JSON outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dfrobust.constants import CLASS_NAMES, DECISION_THRESHOLD, FAKE, REAL
from dfrobust.errors import DfrobustError

ArrayLike = Sequence[float] | np.ndarray | torch.Tensor

#: What each metric key means (written beside the metrics in JSON outputs).
CONVENTIONS: dict[str, str] = {
    "score": "P(real); an image is predicted real when P(real) >= threshold",
    "auroc": "ROC AUC with real as the positive class and P(real) as the score (the paper)",
    "auroc_real_positive": "the same as auroc",
    "auroc_fake_positive": "ROC AUC with fake as the positive class and P(fake) as the score (DeepfakeBench); "
    "equal to auroc_real_positive, since swapping the classes and negating the score leaves the ROC area unchanged",
    "ap_fake_positive": "average precision with fake positive, scored by P(fake) (DeepfakeBench's AP)",
    "ap_real_positive": "average precision with real positive, scored by P(real)",
    "eer_fake_positive": "equal error rate (false positive rate = false negative rate) with fake positive, "
    "interpolated on the ROC curve; the same with real positive",
}


def _np(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def predict(p_real: ArrayLike, threshold: float = DECISION_THRESHOLD) -> np.ndarray:
    """Predicted classes (``REAL`` = 1 where ``P(real) >= threshold``, else ``FAKE`` = 0) as an int array."""
    return np.where(_np(p_real).astype(float) >= threshold, REAL, FAKE)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of predictions equal to the labels; NaN for no images."""
    y, pred = _np(y_true).astype(int), _np(y_pred).astype(int)
    if y.shape != pred.shape:
        raise ValueError(f"labels and predictions differ in shape: {y.shape} vs {pred.shape}")
    return float((pred == y).mean()) if len(y) else float("nan")


def accuracy_at(y_true: ArrayLike, p_real: ArrayLike, threshold: float = DECISION_THRESHOLD) -> float:
    """Accuracy of the decision ``P(real) >= threshold`` (NaN for no images).

    >>> accuracy_at([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    0.75
    """
    return accuracy(y_true, predict(p_real, threshold))


def detection_metrics(y_true: ArrayLike, p_real: ArrayLike, threshold: float = DECISION_THRESHOLD) -> dict[str, object]:
    """Accuracy, AUROC, precision and recall per class and the confusion matrix.

    Args:
        y_true: labels (fake = 0, real = 1).
        p_real: scores ``P(real)``; an image is predicted real when ``p_real >= threshold``.
        threshold: decision threshold on ``P(real)`` (the paper: ``DECISION_THRESHOLD``, and 0.25 for DIP).

    Returns:
        ``{"n", "threshold", "accuracy", "auroc", "fake_precision", "fake_recall",
        "real_precision", "real_recall", "confusion"}``; ``confusion[i][j]`` counts true class
        ``i`` predicted as ``j``; ``auroc`` is ``None`` when only one class is present.
        Precision of a class never predicted is 0 (scikit-learn's ``zero_division=0``).

    >>> m = detection_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    >>> m["accuracy"], m["fake_recall"], m["real_precision"]
    (0.75, 0.5, 0.6666666666666666)
    """
    from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score  # slow to import

    y = _np(y_true).astype(int)
    p = _np(p_real).astype(float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and p_real differ in shape: {y.shape} vs {p.shape}")
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).sum())
        raise DfrobustError(f"the detector gave NaN or Inf scores for {bad} of {len(p)} images (broken weights or inputs); check the model")
    pred = predict(p, threshold)
    prec, rec, _, _ = precision_recall_fscore_support(y, pred, labels=[FAKE, REAL], zero_division=0)
    both = len(np.unique(y)) == 2
    auroc = float(roc_auc_score(y, p)) if both else None
    is_fake = (y == FAKE).astype(int)
    return {
        "n": int(len(y)),
        "threshold": float(threshold),
        "accuracy": accuracy(y, pred),
        "auroc": auroc,
        f"{CLASS_NAMES[FAKE]}_precision": float(prec[FAKE]),
        f"{CLASS_NAMES[FAKE]}_recall": float(rec[FAKE]),
        f"{CLASS_NAMES[REAL]}_precision": float(prec[REAL]),
        f"{CLASS_NAMES[REAL]}_recall": float(rec[REAL]),
        "confusion": confusion_matrix(y, pred, labels=[FAKE, REAL]).tolist(),
        "auroc_real_positive": auroc,
        "auroc_fake_positive": float(roc_auc_score(is_fake, -p)) if both else None,  # -P(real) ranks as P(fake), without rounding
        "ap_fake_positive": float(average_precision_score(is_fake, -p)) if both else None,
        "ap_real_positive": float(average_precision_score(1 - is_fake, p)) if both else None,
        "eer_fake_positive": equal_error_rate(is_fake, -p) if both else None,
    }


def equal_error_rate(y_positive: ArrayLike, score: ArrayLike) -> float:
    """The error rate where the false positive rate equals the false negative rate, interpolated linearly
    between the two ROC points around the crossing.

    >>> equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    0.5
    >>> equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    0.0
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(_np(y_positive).astype(int), _np(score).astype(float))
    gap = (1 - tpr) - fpr  # falls from 1 to -1 as the threshold drops
    i = int(np.argmax(gap <= 0))
    if i == 0 or gap[i] == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
