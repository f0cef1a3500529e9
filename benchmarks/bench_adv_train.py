"""Cost of adversarial training against plain training: seconds per step of PGD-AT, fast AT and TRADES.

All four setups (plain, pgd, fast, trades) train copies of the same detector on the same batch
in interleaved rounds, so that load from other processes hits them alike; the median over rounds
is reported. An epoch is a fixed number of steps, so the step ratio is the epoch ratio (the
per-epoch validation and robustness check are left out). Prints one JSON line per setup and one
ratio line per adversarial method against plain, with the issue's targets (fast <= 2.5x,
PGD-7 <= 9x)::

    .venv/bin/python benchmarks/bench_adv_train.py --arch resnet18 --size 64
    .venv/bin/python benchmarks/bench_adv_train.py --smoke    # a seconds-long run that checks the script works
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from dfrobust.models.detectors import build_detector
from dfrobust.train.adversarial import METHODS, recipe_for
from dfrobust.train.config import TrainConfig
from dfrobust.train.steps import make_optimizer
from train_timing import add_timing_args, random_batch, time_steps

#: The issue's cost targets: at most this many plain steps per adversarial step.
TARGETS = {"fast": 2.5, "pgd": 9.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--adv-steps", type=int, default=TrainConfig.adv_steps, help="steps of pgd and trades")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 16 px, one round: checks the script, measures nothing")
    add_timing_args(parser, size=64)
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.size, args.batch_size, args.rounds, args.steps = "tiny", 16, 4, 1, 1

    device, x, y = random_batch(args)
    base = build_detector(args.arch).to(device).train()
    setups = {}
    for method in ("plain", *METHODS):
        adv = {} if method == "plain" else {"adversarial": method, "adv_steps": args.adv_steps}
        cfg = TrainConfig(arch=args.arch, **adv)
        model = copy.deepcopy(base)
        setups[method] = (model, make_optimizer(model, cfg), cfg)
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
        "smoke": args.smoke,
    }
    for name, (_, _, cfg) in setups.items():
        recipe = recipe_for(cfg, (args.size, args.size))
        settings = recipe.settings() if recipe is not None else {"method": "plain"}
        print(
            json.dumps(
                {
                    "bench": "adv_train_step",
                    "setup": name,
                    "step_s": step[name],
                    "step_s_rounds": times[name],
                    "eps": settings.get("eps"),
                    "steps": settings.get("steps"),
                    **common,
                }
            )
        )
    for method in METHODS:
        ratio = step[method] / step["plain"]
        target = TARGETS.get(method)
        print(
            json.dumps(
                {
                    "bench": "adv_train_cost",
                    "method": method,
                    "vs": "plain",
                    "cost_multiplier": ratio,
                    "target": target,
                    "within_target": None if target is None else ratio <= target,
                    **common,
                }
            )
        )


if __name__ == "__main__":
    main()
