"""Stopping an iterative attack on the images it has already fooled (``stop_margin``), so the cost drops.

AutoAttack runs later attacks only on the images earlier ones left correct; within one attack,
an image that is already misclassified with a margin to spare gains nothing from further steps
whose only job is to fool it. :func:`fooled_for_good` says which images to freeze: their logit
margin in favour of a wrong class (``max_{i != y} Z_i - Z_y``) exceeds ``stop_margin`` *and* the
image rounded to 8 bits (what the attack stage stores as PNG) is misclassified too, so a frozen
image is fooled as stored whatever the margin. The attack keeps a frozen image's current iterate
as its result and runs the remaining steps on the other images only (a smaller batch through the
model), so the forward and backward passes saved are real.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import logit_margin
from dfrobust.utils.io import quantize
from dfrobust.utils.params import Interval

#: The constraint of every attack's ``stop_margin``: off (``None``) or a logit margin >= 0.
STOP_MARGIN = Interval(0, optional=True)


def fooled_for_good(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, stop_margin: float) -> torch.Tensor:
    """Per image (bool, on ``x_adv``'s device): margin of ``logits`` above ``stop_margin`` and its 8-bit rounding misclassified.

    ``logits`` are the model's on ``x_adv`` (the attack has them from its gradient step); the
    8-bit check costs one forward pass, without gradient, on the candidates only.
    """
    candidate = logit_margin(logits.detach(), y) > stop_margin
    if not bool(candidate.any()):
        return candidate
    rows = candidate.nonzero().squeeze(1)
    with torch.no_grad():
        stored_fooled = model(quantize(x_adv[rows])).argmax(1) != y[rows]
    out = torch.zeros_like(candidate)
    out[rows[stored_fooled]] = True
    return out


def loss_grad_logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy loss with respect to ``x``, and the logits at ``x`` (one forward, one backward)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y, reduction="sum"), x)
    return grad, logits.detach()


class StopsEarly:
    """Mixin of an :class:`~dfrobust.attacks.base.Attack` with a ``stop_margin`` parameter: the setting is recorded
    only when on, so the settings (and the run fingerprints built from them) of runs made without it stay valid."""

    stop_margin: float | None

    @property
    def settings(self) -> dict[str, Any]:
        """The attack's settings, without ``stop_margin`` when it is off."""
        out = dict(super().settings)  # type: ignore[misc]
        if out.get("stop_margin") is None:
            out.pop("stop_margin", None)
        return out
