"""Batched inference helpers: logits and P(real) for any number of images."""

from __future__ import annotations

import torch
from torch import nn

from dfrobust.constants import REAL


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits ``N x C`` (on the CPU) of float images ``N x 3 x H x W`` in ``[0, 1]``, in batches.

    The model is used as it is (call ``model.eval()`` first); ``device`` defaults to the
    model's own device.
    """
    if device is None:
        device = next(model.parameters()).device
    out = [model(x[i : i + batch_size].to(device, non_blocking=True)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 2)


def p_real(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``P(real)`` (softmax of the logits, class 1) for each image, on the CPU."""
    return predict_logits(model, x, batch_size, device).softmax(1)[:, REAL]
