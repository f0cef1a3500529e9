"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size ``eps``, clipped to ``[0, 1]``."""

from __future__ import annotations

import torch
from torch import nn

from dfrobust.attacks.base import Attack, budget_value, input_gradient, register_attack
from dfrobust.constants import PAPER_EPS
from dfrobust.utils.params import Budget


@register_attack(labels={"fgsm": "FGSM"}, order=0, paper=True, norm="linf")
class FGSM(Attack):
    """Untargeted FGSM on the true label: ``x_adv = clip(x + eps * sign(grad_x J(x, y)), 0, 1)``.

    Args:
        eps: step size per pixel (the paper: 0.02, picked from 0.01..0.10).
    """

    name = "fgsm"
    params = {"eps": Budget()}

    def __init__(self, eps: float = PAPER_EPS) -> None:
        self.eps = budget_value(eps)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step up the cross-entropy loss."""
        grad = input_gradient(model, x, y)
        return (x + self.eps * grad.sign()).clamp(0, 1), {}
