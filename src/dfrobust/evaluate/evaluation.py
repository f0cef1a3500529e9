"""Evaluating a detector on an image set: the paper's Table I row plus robustness indicators."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.constants import DECISION_THRESHOLD, REAL
from dfrobust.data.dataset import ImageSet
from dfrobust.evaluate.metrics import detection_metrics
from dfrobust.models.gradients import input_gradient_norms
from dfrobust.models.inference import predict_logits

#: Rows of :func:`format_metrics_table`, in order, with their labels.
TABLE_ROWS = (
    ("n", "images"),
    ("accuracy", "accuracy"),
    ("auroc", "AUROC"),
    ("fake_precision", "fake precision"),
    ("fake_recall", "fake recall"),
    ("real_precision", "real precision"),
    ("real_recall", "real recall"),
    ("loss", "cross-entropy"),
    ("input_grad_norm", "mean ||d logits / dx||"),
)


def evaluate_detector(
    model: nn.Module,
    imageset: ImageSet,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    threshold: float = DECISION_THRESHOLD,
    gradients: bool = True,
) -> dict[str, Any]:
    """Table I metrics of ``model`` on ``imageset``, the confusion matrix and gradient size.

    The model is evaluated in eval mode (its mode is restored afterwards).

    Args:
        model: a detector (pixels in ``[0, 1]`` -> 2 logits).
        imageset: the images and labels (e.g. ``load_split(dir, "test")``).
        batch_size: images per forward pass.
        device: where to compute (default: the model's device).
        threshold: decision threshold on ``P(real)``.
        gradients: also compute ``input_grad_norm``, the mean over images of the Frobenius
            norm of the logits' input Jacobian (what eq. (7) penalises); ``None`` when off.

    Returns:
        :func:`~dfrobust.evaluate.metrics.detection_metrics` (``accuracy``, ``auroc``,
        ``fake_precision``, ``fake_recall``, ``real_precision``, ``real_recall``,
        ``confusion``, ``n``, ``threshold``) plus ``loss`` (mean cross-entropy) and
        ``input_grad_norm``.
    """
    was_training = model.training
    model.eval()
    try:
        x = imageset.images()
        logits = predict_logits(model, x, batch_size, device)
        out = detection_metrics(imageset.y, logits.softmax(1)[:, REAL], threshold)
        out["loss"] = float(F.cross_entropy(logits, imageset.y)) if len(x) else float("nan")
        out["input_grad_norm"] = float(input_gradient_norms(model, x, batch_size, device).mean()) if gradients else None
    finally:
        model.train(was_training)
    return out


def format_metrics_table(columns: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per metric, one column per entry of ``columns`` (e.g. splits).

    >>> print(format_metrics_table({"test": {"n": 4, "accuracy": 0.75}}))  # doctest: +NORMALIZE_WHITESPACE
    metric      test
    images         4
    accuracy  0.7500
    """
    names = list(columns)
    rows = [(label, [columns[c].get(key) for c in names]) for key, label in TABLE_ROWS if any(key in columns[c] for c in names)]
    rows.append(("confusion [[ff, fr], [rf, rr]]", [columns[c].get("confusion") for c in names]))
    rows = [r for r in rows if any(v is not None for v in r[1])]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    body = [["metric", *names]] + [[label, *(cell(v) for v in values)] for label, values in rows]
    width0 = max(len(r[0]) for r in body)
    widths = [max(len(r[i]) for r in body) for i in range(1, len(names) + 1)]
    return "\n".join(
        r[0].ljust(width0) + "".join("  " + v.rjust(w) for v, w in zip(r[1:], widths)) for r in body
    )
