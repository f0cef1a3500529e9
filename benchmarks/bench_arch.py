"""Training step time of several architectures at one input size, measured in the same run.

Prints one JSON line per architecture (images/s, median seconds per step) and one ratio line
per architecture against the first (the baseline). Architectures are timed in interleaved
rounds so that load from other processes hits them alike; the median over rounds is reported.
The quick preset's VGG choice comes from this::

    .venv/bin/python benchmarks/bench_arch.py --arch vgg16_bn vgg16_bn_gap --size 32 --optimizer adam
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from dfrobust.models.detectors import build_detector
from dfrobust.train.config import OPTIMIZERS, TrainConfig
from dfrobust.train.steps import make_optimizer
from train_timing import add_timing_args, random_batch, time_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["vgg16_bn", "vgg16_bn_gap"], help="architectures; the first is the baseline")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    add_timing_args(parser, size=32)
    args = parser.parse_args()

    device, x, y = random_batch(args)
    setups = {}
    for arch in args.arch:
        model = build_detector(arch).to(device).train()
        cfg = TrainConfig(arch=arch, optimizer=args.optimizer)
        setups[arch] = (model, make_optimizer(model, cfg), cfg)
    times = time_steps(setups, x, y, args.rounds, args.steps)
    step = {arch: statistics.median(t) for arch, t in times.items()}
    common = {
        "size": args.size,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    for arch in args.arch:
        params = sum(p.numel() for p in setups[arch][0].parameters())
        print(
            json.dumps(
                {
                    "bench": "arch_train_step",
                    "arch": arch,
                    "parameters": params,
                    "images_per_s": args.batch_size / step[arch],
                    "step_s": step[arch],
                    "step_s_rounds": times[arch],
                    **common,
                }
            )
        )
    base = args.arch[0]
    for arch in args.arch[1:]:
        print(json.dumps({"bench": "arch_speedup", "arch": arch, "vs": base, "speedup": step[base] / step[arch], **common}))


if __name__ == "__main__":
    main()
