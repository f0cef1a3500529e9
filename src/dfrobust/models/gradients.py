"""Input gradients of a detector's logits: per image, per logit, batched.

Samples of a batch are independent when the model is in eval mode, so the gradient of the
batch-summed logit ``sum_b Z_i(x_b)`` with respect to the batch gives every image's own
``grad_x Z_i`` in one backward pass: one pass per logit, never one per image.
"""

from __future__ import annotations

import torch
from torch import nn


def logit_input_gradients(logits: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Gradients of each logit column with respect to the input, ``C x N x <x.shape[1:]>``.

    ``logits`` (``N x C``) must have been computed from ``x`` (which requires grad). Entry
    ``[i, b]`` is ``grad_x sum_b' Z_i(x_b')`` at image ``b``: image ``b``'s own gradient when
    the model treats images independently (eval mode; in train mode BatchNorm adds the
    cross-image terms of its batch statistics). ``create_graph=True`` keeps the graph for
    double backprop.
    """
    grads = [torch.autograd.grad(logits[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0] for i in range(logits.shape[1])]
    return torch.stack(grads)


def input_gradient_norms(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Per-image Frobenius norm of the logits' input Jacobian, ``sqrt(sum_i ||grad_x Z_i||^2)``.

    This is the square root of the sum in the paper's eq. (7), for the model as it is (call
    ``model.eval()`` first). Returns a CPU tensor of ``N`` norms.
    """
    if device is None:
        device = next(model.parameters()).device
    norms = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).requires_grad_(True)
        with torch.enable_grad():
            grads = logit_input_gradients(model(x).float(), x)
        norms.append(grads.pow(2).sum(dim=(0, *range(2, grads.dim()))).sqrt().detach().cpu())
    return torch.cat(norms) if norms else torch.empty(0)
