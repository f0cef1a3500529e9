"""Detection metrics of the paper's Tables I and III, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dfrobust.constants import CLASS_NAMES, DECISION_THRESHOLD, FAKE, REAL

ArrayLike = Sequence[float] | np.ndarray | torch.Tensor


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
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score  # slow to import

    y = _np(y_true).astype(int)
    p = _np(p_real).astype(float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and p_real differ in shape: {y.shape} vs {p.shape}")
    pred = predict(p, threshold)
    prec, rec, _, _ = precision_recall_fscore_support(y, pred, labels=[FAKE, REAL], zero_division=0)
    auroc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
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
    }
