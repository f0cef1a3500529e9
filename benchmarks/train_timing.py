"""Shared by the training benchmarks: time training steps of several setups in interleaved rounds."""

from __future__ import annotations

import argparse
import time

import torch

from dfrobust.train.config import TrainConfig
from dfrobust.train.steps import train_step
from dfrobust.utils.runtime import resolve_device

#: name -> (model, optimizer, config)
Setups = dict[str, tuple[torch.nn.Module, torch.optim.Optimizer, TrainConfig]]


def add_timing_args(parser: argparse.ArgumentParser, size: int) -> None:
    """The options every training benchmark takes: input size, batch, steps, rounds, device."""
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="steps per setup per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="auto")


def random_batch(args: argparse.Namespace) -> tuple[torch.device, torch.Tensor, torch.Tensor]:
    """The device and one seeded random batch of images and labels to time steps on."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.size, args.size, device=device)
    y = torch.randint(0, 2, (args.batch_size,), device=device)
    return device, x, y


def time_steps(setups: Setups, x: torch.Tensor, y: torch.Tensor, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per training step of each setup, one value per round.

    Every setup runs one warm-up step, then ``steps`` steps per round, setups interleaved, so
    that load from other processes hits them alike.
    """
    gen = torch.Generator().manual_seed(0)
    cuda = x.device.type == "cuda"

    def run(name: str, n: int) -> float:
        model, opt, cfg = setups[name]
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            train_step(model, opt, x, y, cfg, gen)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    for name in setups:
        run(name, 1)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name in setups:
            times[name].append(run(name, steps))
    return times
