"""Training throughput: plain SGD steps vs Lipschitz-regularised steps, measured in the same run.

Prints one JSON line per mode (images/s, median seconds per step) and one per Lipschitz mode
with its cost ratio against the plain step (target: <= 3x at 64 px for ResNet-18). Modes are
timed in interleaved rounds so that load from other processes hits them alike; the median
over rounds is reported.

    .venv/bin/python benchmarks/bench_train.py --arch resnet18 --size 64 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from dfrobust.models.detectors import build_detector
from dfrobust.train.config import TrainConfig
from train_timing import add_timing_args, random_batch, time_steps

MODES = {
    "plain": {"lipschitz": 0.0},
    "lipschitz-exact": {"lipschitz": 50.0, "lipschitz_estimator": "exact"},
    "lipschitz-rademacher": {"lipschitz": 50.0, "lipschitz_estimator": "rademacher"},
    "lipschitz-exact-bn-eval": {"lipschitz": 50.0, "lipschitz_estimator": "exact", "lipschitz_batchnorm": "eval"},
    "lipschitz-rademacher-bn-eval": {"lipschitz": 50.0, "lipschitz_estimator": "rademacher", "lipschitz_batchnorm": "eval"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    add_timing_args(parser, size=64)
    args = parser.parse_args()

    device, x, y = random_batch(args)
    setups = {}
    for name, extra in MODES.items():
        model = build_detector(args.arch).to(device).train()
        cfg = TrainConfig(arch=args.arch, **extra)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        setups[name] = (model, opt, cfg)
    times = time_steps(setups, x, y, args.rounds, args.steps)
    step = {name: statistics.median(t) for name, t in times.items()}
    common = {
        "arch": args.arch,
        "size": args.size,
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    for name in MODES:
        print(
            json.dumps(
                {
                    "bench": "train_throughput",
                    "mode": name,
                    "images_per_s": args.batch_size / step[name],
                    "step_s": step[name],
                    "step_s_rounds": times[name],
                    **common,
                }
            )
        )
    for name in MODES:
        if name != "plain":
            ratio = step[name] / step["plain"]
            print(
                json.dumps(
                    {
                        "bench": "train_cost_ratio",
                        "mode": name,
                        "vs": "plain",
                        "ratio": ratio,
                        "target": 3.0,
                        "meets_target": ratio <= 3.0,
                        **common,
                    }
                )
            )


if __name__ == "__main__":
    main()
