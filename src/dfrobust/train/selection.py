"""Which epoch a training run keeps: the selection score of an epoch, and the start model it is held against.

:func:`epoch_score` ranks epochs (larger is better, compared as lists):

* plain training: validation accuracy, then loss;
* adversarial training with a held-out robustness check: not collapsed, then held-out robust accuracy
  (per image, PGD, APGD-CE and FGSM all failed: :func:`~dfrobust.train.adversarial.robustness_check`),
  then validation accuracy, then loss (robust selection, as Madry et al.'s ``robustness`` library,
  which ranks by PGD alone; a collapsed epoch last, since a constant predictor is the most robust);
* adversarial fine-tuning with ``adv_max_clean_drop``: first the epochs that are not collapsed and
  lost at most that much validation accuracy against the start model, among them the best held-out
  robust accuracy; when no epoch qualifies, the best validation accuracy. Robust selection alone kept
  the epoch of the cpu preset's PGD-AT that gave up 24 points of clean accuracy for 34% held-out
  PGD accuracy (benchmarks/RESULTS.md), which no user of a detector would choose.

With ``adv_calibrate`` every epoch is scored at its own validation-calibrated threshold
(:mod:`dfrobust.train.calibration`), and so is the start model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dfrobust.data.dataset import ImageSet
from dfrobust.evaluate.collapse import collapsed
from dfrobust.evaluate.evaluation import metrics_from_logits
from dfrobust.models.inference import eval_mode, predict_logits
from dfrobust.train.calibration import margin_threshold, p_real_threshold, shift_logits

#: Accuracies are fractions of a small validation split: a floor equal to an accuracy up to rounding is met.
TOLERANCE = 1e-9


#: The held-out number epochs are ranked by, in words (the sidecar's ``metrics.selection``).
HELD_OUT = "best held-out robust accuracy (PGD, APGD-CE and FGSM all fail)"


def held_out_score(robust: Mapping[str, float]) -> float:
    """The held-out number an epoch is ranked by: robust accuracy (every attack failed); a check of PGD alone: its accuracy."""
    return float(robust.get("robust_accuracy", robust["pgd_accuracy"]))


def epoch_score(val_metrics: Mapping[str, Any], robust: Mapping[str, float] | None = None, floor: float | None = None) -> list[float]:
    """The selection score of an epoch from its validation metrics, held-out check (adversarial) and clean-accuracy floor."""
    acc, loss = float(val_metrics["accuracy"]), float(val_metrics["loss"])
    if robust is None:
        return [acc, -loss]
    healthy = not collapsed(val_metrics)
    held_out = held_out_score(robust)
    if floor is None:
        return [float(healthy), held_out, acc, -loss]
    if healthy and acc >= floor - TOLERANCE:
        return [1.0, held_out, acc, -loss]
    return [0.0, acc, -loss, 0.0]  # no epoch within the floor: the most accurate one


def start_reference(model: nn.Module, val: ImageSet, batch_size: int, device: torch.device, calibrate: bool) -> dict[str, float]:
    """The start model's validation accuracy (at its own calibrated threshold when ``calibrate``), before any epoch."""
    with eval_mode(model):
        logits = predict_logits(model, val.images(), batch_size, device)
    y = val.y.to(logits.device)
    tau = margin_threshold(logits, y) if calibrate else 0.0
    metrics = metrics_from_logits(shift_logits(logits, tau), y)
    return {"val_accuracy": float(metrics["accuracy"]), "tau": tau, "p_real_threshold": p_real_threshold(tau)}


def selection_text(has_val: bool, has_check: bool, max_drop: float | None, start: Mapping[str, float] | None, calibrated: bool) -> str:
    """How the kept epoch was chosen, in words (the sidecar's ``metrics.selection``)."""
    if not has_val:
        return "last epoch (no validation split)"
    if not has_check:
        return "best validation accuracy, then loss"
    if max_drop is None or start is None:
        text = f"{HELD_OUT}, then validation accuracy, then loss"
    else:
        text = (
            f"among the epochs not collapsed and at most {max_drop:g} below the start model's validation accuracy "
            f"({start['val_accuracy']:.3f}), {HELD_OUT}, then validation accuracy; "
            "none: best validation accuracy"
        )
    return text + ("; every epoch at its validation-calibrated threshold" if calibrated else "")
