"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps``, clipped to ``[0, 1]``."""

from __future__ import annotations

import torch
from torch import nn

from dfrobust.attacks.base import Attack, input_gradient, register_attack
from dfrobust.errors import DfrobustError


@register_attack
class FGSM(Attack):
    """Untargeted FGSM on the true label: ``x_adv = clip(x + eps * sign(grad_x J(x, y)), 0, 1)``.

    Args:
        eps: step size per pixel (the paper: 0.02, picked from 0.01..0.10).
    """

    name = "fgsm"

    def __init__(self, eps: float = 0.02) -> None:
        if eps < 0:
            raise DfrobustError(f"--eps must be >= 0, got {eps}")
        self.eps = float(eps)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step up the cross-entropy loss."""
        grad = input_gradient(model, x, y)
        return (x + self.eps * grad.sign()).clamp(0, 1), {}
