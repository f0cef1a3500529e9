"""Cost of the EfficientNet-Lite0 role against the ResNet-18 role, as a ratio timed in one process.

A loaded machine slows both alike, so the ratio survives where absolute seconds do not. Times,
interleaved over ``--rounds``, one training step (forward + backward + SGD step, batch 16) and one
attack step (input gradient in eval mode, batch 20) at the quick preset's 32 px, and prints the
median ratios Lite0 / ResNet-18::

    PYTHONPATH=src .venv/bin/python benchmarks/lite_cost_ratio.py --size 32 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dfrobust.models.detectors import build_detector


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool) -> float:
    """Seconds of one training step (``train``) or one input-gradient step."""
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if train else None
    xi = x.clone().requires_grad_(not train)
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(xi), y)
    if train:
        opt.zero_grad()
        loss.backward()
        opt.step()
    else:
        torch.autograd.grad(loss, xi)
    return time.perf_counter() - t


def main() -> None:
    """Print the median Lite0 / ResNet-18 ratios of a training step and of an attack step."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    models = {"resnet18": build_detector("resnet18"), "efficientnet_lite0": build_detector("efficientnet_lite0", init="imagenet")}
    times: dict[tuple[str, str], list[float]] = {(m, k): [] for m in models for k in ("train", "attack")}
    for r in range(args.rounds + 1):
        for kind, n in (("train", 16), ("attack", 20)):
            x, y = torch.rand(n, 3, args.size, args.size), torch.randint(0, 2, (n,))
            for name, model in models.items() if r % 2 else reversed(models.items()):
                s = step_seconds(model, x, y, kind == "train")
                if r:  # round 0 warms up
                    times[(name, kind)].append(s)
    for kind in ("train", "attack"):
        ratios = [a / b for a, b in zip(times[("efficientnet_lite0", kind)], times[("resnet18", kind)])]
        print(
            f"{kind} step at {args.size} px: Lite0 / ResNet-18 = {statistics.median(ratios):.2f} "
            f"(median of {len(ratios)} interleaved rounds; range {min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
