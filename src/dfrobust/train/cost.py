"""The cost of adversarial training: seconds per step of a recipe against plain training, timed side by side."""

from __future__ import annotations

import copy
import dataclasses
import time

import torch

from dfrobust.data.augment import Augment
from dfrobust.data.dataset import ImageSet
from dfrobust.train.config import ADVERSARIAL_FIELDS, TrainConfig
from dfrobust.train.steps import make_optimizer, train_step

#: Batches timed per setup (after one warm-up each) to measure an adversarial step's cost against a plain one.
COST_BATCHES = 3


def _without_adversarial(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with plain training instead of its adversarial recipe (the baseline of the cost measurement)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    # every adversarial setting back to its default: a plain config with one left set is an error
    return dataclasses.replace(cfg, **{k: defaults[k] for k in ADVERSARIAL_FIELDS})


def measure_cost(
    model: torch.nn.Module,
    cfg: TrainConfig,
    train: ImageSet,
    augment: Augment,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    n_batches: int = COST_BATCHES,
) -> dict[str, float]:
    """Seconds per training step of ``cfg``'s recipe and of plain training, timed side by side.

    Both run on a copy of ``model`` on the same batches, interleaved (one warm-up each, then
    ``n_batches`` each), so that load from other processes hits them alike. The model, its
    optimizer and every random number generator are left as they were: training is not changed.
    Returns ``plain_step_seconds``, ``adversarial_step_seconds``, ``cost_multiplier`` (their ratio)
    and ``batches``.
    """
    plain_cfg = _without_adversarial(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train), generator=gen)
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    batches = [b for b in batches if len(b) >= 2] or [order]
    cuda = device.type == "cuda"
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    times: dict[str, float] = {"plain": 0.0, "adversarial": 0.0}
    with torch.random.fork_rng(devices=devices):
        twin = copy.deepcopy(model).train()
        optimizer = make_optimizer(twin, cfg)
        for i in range(n_batches + 1):
            idx = batches[i % len(batches)]
            x = augment(train.images(idx).to(device), gen)
            y = train.y[idx].to(device)
            for name, step_cfg in (("plain", plain_cfg), ("adversarial", cfg)):
                if cuda:
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                train_step(twin, optimizer, x, y, step_cfg, gen, amp_dtype)
                if cuda:
                    torch.cuda.synchronize(device)
                if i > 0:  # the first round is the warm-up
                    times[name] += time.perf_counter() - start
        del twin, optimizer
    return {
        "plain_step_seconds": times["plain"] / n_batches,
        "adversarial_step_seconds": times["adversarial"] / n_batches,
        "cost_multiplier": times["adversarial"] / max(times["plain"], 1e-12),
        "batches": n_batches,
    }
