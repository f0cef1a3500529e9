"""Lipschitz regularisation: the paper's eq. (7), by double backprop.

    J_aug = J + lambda / (C N) * sum_{i=1..C} ||grad_x Z_i(x)||^2

with ``C`` logits and ``N`` input dimensions (3 H W), averaged over the batch. The input
gradients are built with ``create_graph=True`` so that the penalty's own gradient with
respect to the weights flows back through them.

Batching: one backward pass per logit on the batch-summed logit gives every image's gradient
at once (no loop over images). With ``estimator="rademacher"`` a single backward pass on
``sum_b v_b . Z(x_b)``, with random signs ``v_b`` in ``{-1, 1}^C``, gives an unbiased estimate
of the same sum (``E[(v . g)^2] = sum_i g_i^2``) at about half the cost. The signs are drawn per
image where the images are independent, and once per batch (shared by its images) where
BatchNorm's batch statistics couple them. Per-image signs would then estimate another penalty:
each image's own gradient through the batch statistics (``per_image_train`` in
``benchmarks/bench_lipschitz_batchnorm.py``), where the component the batch shares no longer
cancels. It constrains far more: at large lambdas it can keep the detector from learning
(benchmarks/RESULTS.md), while shared signs train as the exact penalty does.

BatchNorm (``batchnorm`` argument): with ``"batch"`` (default, as the authors did) the penalty
is computed on the training forward pass, BatchNorm in train mode. The batch statistics then
couple the images: each image's gradient of the batch-summed logit also carries the terms
through the batch mean and variance, which remove the component shared by the batch. This is
not a small effect (its size on ResNet-18: benchmarks/RESULTS.md), but it costs nothing extra
and still shrinks the gradients of the deployed (eval-mode) model. With ``"eval"`` the penalty uses a second forward pass with BatchNorm on its
running statistics, so it is exactly each image's own gradient as at test time (one more
forward pass and its double backward). Models without BatchNorm (VGG-16, ``tiny``) get the
exact per-image penalty either way.

Under DistributedDataParallel (``train`` under torchrun) each process computes the penalty on
its own slice of the global batch, as a mean over its images; the training loop weights each
process's loss by its share of the batch, so DDP's gradient average is the gradient of the
global batch's mean. The double backward runs in each process; DDP averages the weight gradients
once, after it. BatchNorm is per process (plain BatchNorm, not SyncBatchNorm, which has no double
backward): batch statistics, and so the coupling of ``"batch"`` mode, span the process's slice.
``rows`` lets the Rademacher signs of a slice be the rows of the global batch's signs, so the
estimate equals the one-process one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.errors import DfrobustError
from dfrobust.models.gradients import logit_input_gradients

ESTIMATORS = ("exact", "rademacher")
BATCHNORM_MODES = ("batch", "eval")


def lipschitz_penalty(
    logits: torch.Tensor,
    x: torch.Tensor,
    estimator: str = "exact",
    generator: torch.Generator | None = None,
    coupled: bool = False,
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The bracket of eq. (7) without lambda: ``mean_b 1/(C N) sum_i ||grad_x Z_i(x_b)||^2``.

    Args:
        logits: ``B x C`` logits computed from ``x``.
        x: the input batch ``B x 3 x H x W``; it must require grad.
        estimator: ``"exact"`` (one backward per logit) or ``"rademacher"`` (one backward in
            all, unbiased).
        generator: CPU generator for the random signs of ``"rademacher"``.
        coupled: whether the images of the batch are coupled (BatchNorm in train mode); then
            ``"rademacher"`` shares one sign vector across the batch.
        rows: ``(offset, total)`` when ``logits`` are rows ``offset ..`` of a global batch of
            ``total`` images (one process's slice under DDP): the per-image signs are drawn for
            the global batch and sliced, as one process would draw them.

    Returns:
        A scalar that is differentiable with respect to the model's weights.
    """
    batch, classes = logits.shape
    dims = x[0].numel()
    if estimator == "exact":
        sq = logit_input_gradients(logits, x, create_graph=True).float().pow(2).sum()
    elif estimator == "rademacher":
        # one sign vector per image where images are independent; one per batch where BatchNorm's
        # batch statistics couple them (then only shared signs estimate the batch-summed gradient)
        offset, total = rows if rows is not None else (0, batch)
        shape = (1, classes) if coupled else (total, classes)
        signs = torch.randint(0, 2, shape, generator=generator).to(logits.device, logits.dtype) * 2 - 1
        signs = signs[offset : offset + batch] if not coupled else signs.expand_as(logits)
        (g,) = torch.autograd.grad(logits, x, grad_outputs=signs, create_graph=True)
        sq = g.float().pow(2).sum()
    else:
        raise DfrobustError(f"unknown Lipschitz estimator {estimator!r}; use one of {ESTIMATORS}")
    return sq / (classes * dims * batch)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds any BatchNorm layer."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return any(isinstance(m, kinds) for m in model.modules())


def training_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float = 0.0,
    estimator: str = "exact",
    generator: torch.Generator | None = None,
    batchnorm: str = "batch",
    rows: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Cross-entropy plus ``lam`` times the Lipschitz penalty (none when ``lam == 0``).

    ``batchnorm`` says how the penalty treats BatchNorm (see the module docstring): ``"batch"``
    on the training pass, ``"eval"`` on a second pass with running statistics. ``rows``: see
    :func:`lipschitz_penalty`.
    Returns ``(loss, logits, penalty)``; ``penalty`` is ``None`` without regularisation.
    """
    if batchnorm not in BATCHNORM_MODES:
        raise DfrobustError(f"unknown Lipschitz BatchNorm mode {batchnorm!r}; use one of {BATCHNORM_MODES}")
    if lam <= 0:
        logits = model(x)
        return F.cross_entropy(logits.float(), y), logits, None
    if batchnorm == "eval" and model.training and has_batchnorm(model):
        logits = model(x)
        xr = x.detach().requires_grad_(True)
        model.eval()
        try:
            penalty = lipschitz_penalty(model(xr), xr, estimator, generator, rows=rows)
        finally:
            model.train()
    else:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        coupled = model.training and has_batchnorm(model)
        penalty = lipschitz_penalty(logits, x, estimator, generator, coupled, rows)
    return F.cross_entropy(logits.float(), y) + lam * penalty, logits, penalty
