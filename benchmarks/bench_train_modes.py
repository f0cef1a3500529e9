"""Training throughput on the CPU (or GPU): eager float32 against channels-last, bf16 autocast and torch.compile.

Issue 26's goal 3: adopt what makes a detector's training step at least 1.5x faster with the same
accuracy. Every mode trains a copy of the same detector (same init) with the library's
``train_step`` on one seeded batch; modes run in interleaved rounds so that load from other
processes hits them alike, and the median seconds per step over the rounds is reported with its
ratio against eager float32 (the first mode) measured in the same run. ``compile`` also prints
its compile time (the first two steps), to set against the steps it saves. bf16 autocast is
reported but cannot be adopted for presets: its rounding depends on the CPU's instruction set,
which issue 23's host-independence goal pins.

    .venv/bin/python benchmarks/bench_train_modes.py --arch vgg16_bn_gap resnet18 --size 32 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dfrobust.models.detectors import build_detector
from dfrobust.train.config import TrainConfig
from dfrobust.train.steps import make_optimizer, train_step
from train_timing import add_timing_args, random_batch

MODES = ("eager", "channels_last", "bf16", "compile")


def make_step(arch: str, mode: str, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[Callable[[], None], float]:
    """One training step of ``arch`` in ``mode`` on ``(x, y)``, and the seconds its first two steps took."""
    torch.manual_seed(0)
    model = build_detector(arch).to(x.device).train()
    opt = make_optimizer(model, cfg)
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if mode == "compile" else model
    amp = torch.bfloat16 if mode == "bf16" else None
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        train_step(net, opt, x, y, cfg, gen, amp_dtype=amp)

    start = time.perf_counter()
    step()
    step()
    return step, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["vgg16_bn_gap", "resnet18"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="the first is the baseline")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    add_timing_args(parser, size=32)
    args = parser.parse_args()
    device, x, y = random_batch(args)
    cfg = TrainConfig(optimizer=args.optimizer, lr=1e-4, batch_size=args.batch_size)
    for arch in args.arch:
        steps, warmup = {}, {}
        for mode in args.modes:
            steps[mode], warmup[mode] = make_step(arch, mode, x, y, cfg)
        times: dict[str, list[float]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):
            for mode in args.modes:
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[mode]()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[mode].append((time.perf_counter() - start) / args.steps)
        base = statistics.median(times[args.modes[0]])
        for mode in args.modes:
            med = statistics.median(times[mode])
            record = {
                "arch": arch, "size": args.size, "batch_size": args.batch_size, "mode": mode, "device": str(device),
                "threads": torch.get_num_threads(), "s_per_step": round(med, 4), "images_per_s": round(args.batch_size / med, 1),
                "speedup_vs_" + args.modes[0]: round(base / med, 3), "first_two_steps_s": round(warmup[mode], 2),
            }  # fmt: skip
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
