"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps``, clipped to ``[0, 1]``."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from dfrobust.attacks.base import Attack, input_gradient, register_attack
from dfrobust.errors import DfrobustError

log = logging.getLogger(__name__)
#: Linf budgets above this (in [0, 1] pixel units) no longer give small perturbations: a warning says so.
LINF_WARN = 0.1
_warned: set[float] = set()


def warn_large_linf(eps: float, flag: str = "--eps") -> None:
    """Log a warning (once per value) for an Linf budget above :data:`LINF_WARN`; the attack still runs."""
    if eps > LINF_WARN and eps not in _warned:
        _warned.add(eps)
        log.warning(f"{flag} {eps:g} is more than {LINF_WARN:g} of the [0, 1] pixel range: a plainly visible "
                    "perturbation, not a small one (the paper uses 0.02)")  # fmt: skip


@register_attack(labels={"fgsm": "FGSM"}, order=0, paper=True, norm="linf")
class FGSM(Attack):
    """Untargeted FGSM on the true label: ``x_adv = clip(x + eps * sign(grad_x J(x, y)), 0, 1)``.

    Args:
        eps: step size per pixel (the paper: 0.02, picked from 0.01..0.10).
    """

    name = "fgsm"

    def __init__(self, eps: float = 0.02) -> None:
        if not math.isfinite(eps) or eps < 0:
            raise DfrobustError(f"--eps must be a finite number >= 0, got {eps}")
        warn_large_linf(eps)
        self.eps = float(eps)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step up the cross-entropy loss."""
        grad = input_gradient(model, x, y)
        return (x + self.eps * grad.sign()).clamp(0, 1), {}
