"""A decision threshold calibrated on held-out images, folded into the detector's last layer.

Adversarial fine-tuning of a detector often keeps the ranking of its scores (a high AUROC) but
moves them: the adversarial examples of the fakes look real, so the fine-tuned model leans
towards "real" and the 0.5 threshold calls many fakes real. A threshold chosen on the validation
split restores the operating point without touching what the model learnt.

dfrobust's convention is a detector that decides by its larger logit (every attack and every
metric assumes it), so the threshold is not stored beside the model: it is folded into the bias
of the last linear layer. With margin ``d = z_real - z_fake`` and cut ``tau`` on it, the bias of
the real logit drops by ``tau / 2`` and that of the fake logit rises by ``tau / 2``: the new margin
is ``d - tau``, the larger logit is the calibrated decision, and a whitebox attack sees exactly the
calibrated detector (the threshold is part of the model it differentiates).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from dfrobust.constants import FAKE, REAL
from dfrobust.errors import DfrobustError

#: Where no sample sits beyond the cut, it is placed this far (in logits) beyond the extreme margin.
OUTER_GAP = 1.0


def margin_threshold(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The cut ``tau`` on ``z_real - z_fake`` (predict real when the margin is at least ``tau``) of best accuracy.

    Among cuts of equal accuracy the one nearest 0 wins (0 itself when it is among them: the
    uncalibrated decision is kept unless a cut is strictly better on these images); a cut between
    two margins sits midway, so no held-out image lies on it.

    >>> margin_threshold(torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 4.0]]), torch.tensor([0, 0, 1, 1]))
    2.5
    """
    if len(y) == 0:
        raise DfrobustError("a threshold needs at least one held-out image")
    d, order = (logits[:, REAL] - logits[:, FAKE]).double().cpu().sort()
    ys = y.cpu()[order]
    n = len(d)
    # cut k: the k lowest margins are called fake, the rest real
    fakes_below = torch.cat([torch.zeros(1, dtype=torch.long), (ys == FAKE).long().cumsum(0)])
    reals_below = torch.cat([torch.zeros(1, dtype=torch.long), (ys == REAL).long().cumsum(0)])
    correct = fakes_below + (reals_below[-1] - reals_below)
    lo = torch.cat([torch.tensor([-math.inf], dtype=d.dtype), d])
    hi = torch.cat([d, torch.tensor([math.inf], dtype=d.dtype)])
    best_tau, best = 0.0, -1
    for k in range(n + 1):
        # a cut between two equal margins cannot be made: both sides get the same answer
        if lo[k] >= hi[k] or int(correct[k]) < best:
            continue
        # predict real iff d >= tau: tau in (lo, hi] realises cut k
        if lo[k] < 0 <= hi[k]:
            tau = 0.0
        elif math.isinf(lo[k]):
            tau = float(hi[k]) - OUTER_GAP
        elif math.isinf(hi[k]):
            tau = float(lo[k]) + OUTER_GAP
        else:
            tau = float(lo[k] + hi[k]) / 2
        if int(correct[k]) > best or abs(tau) < abs(best_tau):
            best_tau, best = tau, int(correct[k])
    return best_tau


def p_real_threshold(tau: float) -> float:
    """The threshold on ``P(real)`` that the margin cut ``tau`` is (``sigmoid(tau)``)."""
    return 1.0 / (1.0 + math.exp(-tau))


def shift_logits(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """The logits the head shifted by ``tau`` (:func:`shift_head`) gives: margin ``d - tau``, without a forward pass."""
    out = logits.clone()
    out[:, REAL] -= tau / 2
    out[:, FAKE] += tau / 2
    return out


def last_linear(model: nn.Module) -> nn.Linear:
    """The detector's last ``nn.Linear`` (its 2-logit head), which must have a bias."""
    head = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            head = module
    if head is None or head.bias is None or head.out_features != 2:
        raise DfrobustError("threshold calibration needs a last linear layer with 2 outputs and a bias")
    return head


def shift_head(model: nn.Module, tau: float) -> None:
    """Fold the margin cut ``tau`` into the head's bias, in place: the larger logit becomes the calibrated decision."""
    bias = last_linear(model).bias
    with torch.no_grad():
        bias[REAL] -= tau / 2
        bias[FAKE] += tau / 2


@contextlib.contextmanager
def shifted_head(model: nn.Module, tau: float) -> Iterator[nn.Module]:
    """``model`` with ``tau`` folded in for the block; the exact former bias is restored after it (training goes on unshifted)."""
    bias = last_linear(model).bias
    saved = bias.detach().clone()
    shift_head(model, tau)
    try:
        yield model
    finally:
        with torch.no_grad():
            bias.copy_(saved)
