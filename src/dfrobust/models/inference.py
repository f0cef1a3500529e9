"""Batched inference helpers: logits and P(real) for any number of images, and eval mode for a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; afterwards every submodule gets its own previous mode back.

    Not ``model.train(was)``: that sets the mode of every submodule, so a wrapper made in train mode
    (a new ``nn.Module`` is) around a detector in eval mode would leave the detector's BatchNorm in
    train mode, scoring later batches with their own statistics.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
