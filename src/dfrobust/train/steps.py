"""One epoch of training: the optimizer, the augmentation, the per-epoch generator and the step.

:func:`train_one_epoch` is what :func:`dfrobust.train.loop.train_detector` runs per epoch;
:func:`train_step` is one optimizer step of ``cfg``'s loss (plain, Lipschitz-penalised or an
adversarial recipe), weighted for DistributedDataParallel when the batch is one process's slice.
"""

from __future__ import annotations

import math

import torch

from dfrobust.data.augment import Augment, scaled_sigma
from dfrobust.data.dataset import ImageSet
from dfrobust.errors import DfrobustError
from dfrobust.train.adversarial import recipe_for
from dfrobust.train.config import TrainConfig
from dfrobust.train.lipschitz import training_loss
from dfrobust.utils import distributed
from dfrobust.utils.runtime import progress


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names over the model's parameters (SGD with momentum, or Adam)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_augment(cfg: TrainConfig, width: int) -> Augment:
    """The training augmentation of ``cfg`` for images ``width`` pixels wide (blur sigma scaled to it)."""
    return Augment(cfg.hflip, cfg.blur_fraction, scaled_sigma(cfg.blur_sigma, width, cfg.blur_reference_width))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch (batch order, augmentation): a function of seed and epoch only,
    so a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    rows: tuple[int, int, int] | None = None,
    epochs_done: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a batch; returns (loss, logits, penalty).

    The loss is ``cfg``'s: cross-entropy, plus the Lipschitz penalty when ``cfg.lipschitz > 0``,
    or an adversarial recipe's (:func:`dfrobust.train.adversarial.recipe_for`; its attacks draw
    their random starts from ``generator``) when ``cfg.adversarial`` is set. ``penalty`` is the
    Lipschitz term or TRADES' KL term, ``None`` otherwise.

    ``rows``: ``(offset, total, world_size)`` when ``x`` is one process's slice of a global batch
    of ``total`` images under DDP; the loss that is backpropagated is then weighted by
    ``len(x) * world_size / total``, so DDP's average over the processes is the gradient of the
    global batch's mean loss (the returned loss is the slice's own mean).

    ``epochs_done``: fractional epochs of this run finished before the step, for the adversarial
    radius ramp (``None``: the full radius).
    """
    recipe = recipe_for(cfg, (x.shape[-2], x.shape[-1]), epochs_done)
    slice_rows = rows[:2] if rows is not None else None
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        if recipe is not None:
            loss, logits, penalty = recipe.loss(model, x, y, generator, slice_rows)
        else:
            loss, logits, penalty = training_loss(
                model, x, y, cfg.lipschitz, cfg.lipschitz_estimator, generator, cfg.lipschitz_batchnorm, slice_rows
            )
    weighted = loss if rows is None else loss * (len(x) * rows[2] / rows[1])
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(weighted).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        weighted.backward()
        optimizer.step()
    return loss, logits, penalty


def local_rows(n: int, ctx: distributed.Context) -> tuple[int, int]:
    """The rows ``[start, stop)`` of a global batch of ``n`` that process ``ctx.rank`` trains on (contiguous, sizes within one)."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (ctx.rank < extra)


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: ImageSet,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    augment: Augment,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    ctx: distributed.Context | None = None,
) -> dict[str, float]:
    """One pass over ``train`` in shuffled batches; returns mean loss, accuracy and penalty.

    With ``ctx`` of several processes (``model`` wrapped in DistributedDataParallel) each process
    trains on its slice of every global batch and the returned means are over all processes.
    """
    ctx = ctx or distributed.Context()
    gen = epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(train), generator=gen)
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2 * ctx.world_size:
        batches.pop()  # BatchNorm cannot train on a single image (per process)
    if ctx.sharded:
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 7919 + ctx.rank)  # dropout: independent draws per process
    model.train()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct, penalty, count
    bar = progress(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not ctx.is_main)
    for step, idx in enumerate(bar):
        # the whole batch's augmentation on every process (the same draws), then this process's slice
        x = augment(train.images(idx).to(device, non_blocking=True), gen)
        if cfg.noise_sigma > 0:
            # Cohen et al.: every training image gets fresh Gaussian noise, not clipped to [0, 1]
            x = x + cfg.noise_sigma * torch.randn(x.shape, generator=gen).to(device)
        y = train.y[idx].to(device, non_blocking=True)
        rows = None
        if ctx.sharded:
            start, stop = local_rows(len(idx), ctx)
            x, y, rows = x[start:stop], y[start:stop], (start, len(idx), ctx.world_size)
        done = epoch - 1 + step / len(batches)
        loss, logits, penalty = train_step(model, optimizer, x, y, cfg, gen, amp_dtype, scaler, rows, done)
        n = len(y)
        totals += torch.stack(
            [
                loss.detach().double() * n,
                (logits.detach().argmax(1) == y).sum().double(),
                (penalty.detach().double() * n) if penalty is not None else totals.new_zeros(()),
                totals.new_tensor(n),
            ]
        )
        if step % 10 == 0 or step == len(batches) - 1:
            loss_sum, correct, _, count = totals.tolist()
            if not math.isfinite(loss_sum):
                raise DfrobustError(f"training diverged (loss is not finite) in epoch {epoch}; lower --lr or --lipschitz")
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
    loss_sum, correct, pen_sum, count = distributed.all_reduce_sum(totals, ctx).tolist()
    return {"train_loss": loss_sum / count, "train_accuracy": correct / count, "train_penalty": pen_sum / count}
