"""GPU benchmark suite: DIP, CW and training at the paper's settings, on one GPU and then on all of them.

One prepared run (under 10 minutes on a machine of H100-class GPUs) that measures what
docs/scaling.md's cost model needs:

* DIP at the paper's settings (its generator, 256 px) for batch sizes 1/8/32/64, AMP off (fp32)
  and on (bf16): seconds per iteration, amortised seconds per image over ``--dip-iterations``
  (the paper classifies at 6,000 of 10,000; target <= 10 s per image on one H100 against the
  paper's ~30 min on a K80), peak memory; then the best setting with the study's recording (a
  ResNet-18 scoring the raw and averaged outputs every 10 iterations);
* FGSM, PGD (10 steps) and APGD (100 steps): images per second at the same size and batch as CW;
* CW at the paper's parameters (kappa 200, 5 search steps x 1,000 Adam steps, which kappa 200
  runs in full): seconds per optimisation step of a batch, hence images per second;
* training throughput of VGG-16 and ResNet-18 at 256 px with AMP (and without, for the ratio);
* the same under torchrun on every visible GPU (DIP and CW sharded: each rank its own batch;
  training with DistributedDataParallel at a global batch of N x the one-GPU batch): the
  suite launches ``torchrun --nproc_per_node N`` on itself when more than one GPU is visible.

Every measurement is one JSON line on stdout; a table follows at the end (stderr).

    python benchmarks/gpu_suite.py                     # one GPU, then all GPUs under torchrun
    python benchmarks/gpu_suite.py --smoke             # CPU, tiny sizes, 2 gloo processes: proves it runs
    torchrun --nproc_per_node 8 benchmarks/gpu_suite.py --multi   # only the multi-GPU part
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from gpu_dip import time_config

from dfrobust.attacks.base import make_attack
from dfrobust.models.detectors import build_detector
from dfrobust.train.config import TrainConfig
from dfrobust.train.loop import _amp
from dfrobust.train.steps import train_step
from dfrobust.utils import distributed
from dfrobust.utils.runtime import versions

#: DIP modes: AMP off and on (bf16 autocast of the generator).
DIP_MODES = {"fp32": False, "bf16": True}
#: CW search steps x Adam steps at the paper's parameters (kappa 200 is rarely reached: every step runs).
CW_PAPER_STEPS = 5 * 1000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def emit(row: dict[str, Any], rows: list[dict[str, Any]], ctx: distributed.Context) -> None:
    """Print a result as a JSON line (rank 0) and keep it for the table."""
    rows.append(row)
    if ctx.is_main:
        print(json.dumps(row), flush=True)


def bench_dip(args: argparse.Namespace, device: torch.device, ctx: distributed.Context, rows: list) -> dict | None:
    """DIP seconds per image at every batch size and mode; returns the best row (one GPU) or the sharded row."""
    best = None
    configs = [(args.dip_mode, args.dip_batch)] if ctx.sharded else [(m, b) for m in args.dip_modes for b in args.dip_batches]
    for mode, batch in configs:
        if device.type != "cuda" and DIP_MODES[mode]:
            emit({"bench": "dip", "mode": mode, "batch": batch, "skipped": "bf16 autocast needs CUDA"}, rows, ctx)
            continue
        distributed.barrier(ctx)  # every rank purifies its own batch at the same time
        try:
            r = time_config(args.size, batch, mode, device, args.warmup, args.timed)
        except torch.OutOfMemoryError:
            emit({"bench": "dip", "mode": mode, "batch": batch, "oom": True}, rows, ctx)
            torch.cuda.empty_cache()
            continue
        per_gpu = r["sec_per_iteration"] * args.dip_iterations / batch
        worst = max(distributed.all_gather(per_gpu, ctx))  # the slowest rank sets the pace
        row = {"bench": "dip", "world_size": ctx.world_size, "mode": mode, "amp": DIP_MODES[mode], "batch": batch, "size": args.size,
               "iterations": args.dip_iterations, **r, "seconds_per_image": worst / ctx.world_size,
               "images_per_hour": 3600.0 * ctx.world_size / worst}  # fmt: skip
        emit(row, rows, ctx)
        if best is None or row["seconds_per_image"] < best["seconds_per_image"]:
            best = row
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if best is not None and not ctx.sharded:
        classifier = build_detector("resnet18").to(device).eval()
        rec = time_config(args.size, best["batch"], best["mode"], device, args.warmup, max(args.timed, 10), classifier)
        emit({"bench": "dip-recording", "mode": best["mode"], "batch": best["batch"], "size": args.size, **rec,
              "seconds_per_image": rec["sec_per_iteration"] * args.dip_iterations / best["batch"],
              "target_seconds_per_image": 10.0, "paper_seconds_per_image": 1800.0}, rows, ctx)  # fmt: skip
    return best


def time_attack(
    attack: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, ctx: distributed.Context
) -> float:
    """Seconds of one call of ``attack`` on ``(x, y)`` after a warm-up, the slowest rank's (every rank at once)."""
    attack(model, x[:2], y[:2])  # warm-up
    distributed.barrier(ctx)
    _sync(device)
    start = time.perf_counter()
    attack(model, x, y)
    _sync(device)
    return max(distributed.all_gather(time.perf_counter() - start, ctx))


def bench_cw(args: argparse.Namespace, device: torch.device, ctx: distributed.Context, rows: list) -> None:
    """Seconds per CW optimisation step of a batch; images per second at the paper's 5 x 1,000 steps."""
    for arch in args.cw_archs:
        model = build_detector(arch).to(device).eval()
        x = torch.rand(args.cw_batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(ctx.rank)).to(device)
        y = torch.zeros(args.cw_batch, dtype=torch.long, device=device)
        attack = make_attack("cw", kappa=200.0, search_steps=1, max_steps=args.cw_steps, abort_early=False)
        worst = time_attack(attack, model, x, y, device, ctx) / args.cw_steps
        emit({"bench": "cw", "world_size": ctx.world_size, "arch": arch, "batch": args.cw_batch, "size": args.size,
              "sec_per_step": worst, "paper_steps": CW_PAPER_STEPS,
              "images_per_second": ctx.world_size * args.cw_batch / (worst * CW_PAPER_STEPS)}, rows, ctx)  # fmt: skip
        del model


#: The gradient attacks timed beside CW: name -> (make_attack parameters, gradient steps per image).
ATTACKS = {"fgsm": ({"eps": 0.02}, 1), "pgd": ({"eps": 0.02, "steps": 10}, 10), "apgd": ({"eps": 0.02, "steps": 100}, 100)}


def bench_attacks(args: argparse.Namespace, device: torch.device, ctx: distributed.Context, rows: list) -> None:
    """Images per second of FGSM, PGD (10 steps) and APGD (100 steps, every step run) at ``--size``."""
    for arch in args.cw_archs:
        model = build_detector(arch).to(device).eval()
        x = torch.rand(args.cw_batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(ctx.rank)).to(device)
        y = torch.zeros(args.cw_batch, dtype=torch.long, device=device)
        for name, (params, steps) in ATTACKS.items():
            worst = time_attack(make_attack(name, **params), model, x, y, device, ctx)
            emit({"bench": name, "world_size": ctx.world_size, "arch": arch, "batch": args.cw_batch, "size": args.size, "steps": steps,
                  "seconds": worst, "images_per_second": ctx.world_size * args.cw_batch / worst}, rows, ctx)  # fmt: skip
        del model


def bench_train(args: argparse.Namespace, device: torch.device, ctx: distributed.Context, rows: list) -> None:
    """Training images per second (AMP on and off); under torchrun DDP at a global batch of N x ``--train-batch``."""
    for arch in args.train_archs:
        for amp in (True, False):
            if amp and device.type != "cuda":
                continue  # AMP is CUDA-only: on the CPU both would be fp32
            torch.manual_seed(0)
            model = build_detector(arch).to(device).train()
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            cfg = TrainConfig(arch=arch, batch_size=max(2, args.train_batch * ctx.world_size), amp=amp, device=str(device))
            net = (
                torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                if ctx.group
                else model
            )
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            amp_dtype, scaler = _amp(device, amp)
            x = torch.rand(args.train_batch, 3, args.size, args.size, device=device)
            y = torch.randint(0, 2, (args.train_batch,), device=device)
            total = args.train_batch * ctx.world_size
            rows_arg = (ctx.rank * args.train_batch, total, ctx.world_size) if ctx.sharded else None
            gen = torch.Generator().manual_seed(0)
            try:
                for _ in range(args.train_warmup):
                    train_step(net, optimizer, x, y, cfg, gen, amp_dtype, scaler, rows_arg)
                distributed.barrier(ctx)
                _sync(device)
                start = time.perf_counter()
                for _ in range(args.train_steps):
                    train_step(net, optimizer, x, y, cfg, gen, amp_dtype, scaler, rows_arg)
                _sync(device)
            except torch.OutOfMemoryError:
                emit({"bench": "train", "arch": arch, "amp": amp, "batch": total, "oom": True}, rows, ctx)
                torch.cuda.empty_cache()
                continue
            per_step = max(distributed.all_gather((time.perf_counter() - start) / args.train_steps, ctx))
            emit({"bench": "train", "world_size": ctx.world_size, "arch": arch, "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
                  "batch": total, "size": args.size, "sec_per_step": per_step, "images_per_second": total / per_step}, rows, ctx)  # fmt: skip
            del net, model, optimizer


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a plain-text table."""
    lines = [f"{'bench':<14}{'world':>6}  {'setting':<28}{'result':>36}"]
    for r in rows:
        if "skipped" in r or "oom" in r:
            result = "skipped: " + r.get("skipped", "out of memory")
            setting = f"{r.get('mode', r.get('arch'))} batch {r.get('batch')}"
        elif r["bench"].startswith("dip"):
            setting = f"{r['mode']} batch {r['batch']} {r['size']} px"
            result = f"{r['seconds_per_image']:.2f} s/image amortised"
        elif r["bench"] == "cw":
            setting = f"{r['arch']} batch {r['batch']} {r['size']} px"
            result = f"{r['images_per_second']:.3f} images/s (paper params)"
        elif r["bench"] in ATTACKS:
            setting = f"{r['arch']} batch {r['batch']} {r['size']} px"
            result = f"{r['images_per_second']:.2f} images/s ({r['steps']} steps)"
        else:
            setting = f"{r['arch']} {'amp ' + r['amp'] if r['amp'] else 'fp32'} batch {r['batch']} {r['size']} px"
            result = f"{r['images_per_second']:.1f} images/s"
        lines.append(f"{r['bench']:<14}{r.get('world_size', 1):>6}  {setting:<28}{result:>36}")
    return "\n".join(lines)


def run_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The benchmarks of this process (one GPU, or one rank under torchrun)."""
    ctx = distributed.setup("cpu" if args.device == "cpu" else "auto")
    device = distributed.device_for(args.device, ctx)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if ctx.is_main:
        print(json.dumps({"bench": "suite", "world_size": ctx.world_size, "device": str(device), "smoke": args.smoke,
                          "versions": versions()}), flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    best = bench_dip(args, device, ctx, rows)
    if best is not None:
        args.dip_mode, args.dip_batch = best["mode"], best["batch"]
    bench_cw(args, device, ctx, rows)
    bench_attacks(args, device, ctx, rows)
    bench_train(args, device, ctx, rows)
    return rows


def launch_multi(args: argparse.Namespace, nproc: int) -> list[dict[str, Any]]:
    """Run the multi-process part under ``torchrun --nproc_per_node nproc``; its JSON lines."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), __file__, "--multi",
           "--dip-mode", args.dip_mode, "--dip-batch", str(args.dip_batch)]  # fmt: skip
    if args.smoke:
        cmd.append("--smoke")
    if args.device != "auto":
        cmd += ["--device", args.device]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the torchrun part failed (exit {done.returncode})")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(json.dumps(row), flush=True)
    return [r for r in rows if r.get("bench") != "suite"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (the paper: 256)")
    parser.add_argument("--dip-batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--dip-modes", nargs="+", default=list(DIP_MODES), choices=list(DIP_MODES))
    parser.add_argument("--dip-iterations", type=int, default=6000, help="iterations per image to amortise over (the paper: T = 6,000)")
    parser.add_argument("--dip-mode", default="bf16", choices=list(DIP_MODES), help="DIP mode of the multi-GPU part")
    parser.add_argument("--dip-batch", type=int, default=32, help="DIP batch per GPU of the multi-GPU part")
    parser.add_argument("--warmup", type=int, default=5, help="DIP warm-up iterations")
    parser.add_argument("--timed", type=int, default=30, help="DIP timed iterations")
    parser.add_argument("--cw-archs", nargs="+", default=["vgg16", "resnet18"], help="architectures of the CW and attack timings")
    parser.add_argument("--cw-batch", type=int, default=64, help="batch of the CW and attack timings")
    parser.add_argument("--cw-steps", type=int, default=20, help="CW steps timed (extrapolated to the paper's 5 x 1,000)")
    parser.add_argument("--train-archs", nargs="+", default=["vgg16", "resnet18"])
    parser.add_argument("--train-batch", type=int, default=64, help="training batch per GPU")
    parser.add_argument("--train-warmup", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--multi", action="store_true", help="only the multi-process part (under torchrun)")
    parser.add_argument("--no-multi", action="store_true", help="skip the torchrun part")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, 2 gloo processes: checks that every part runs")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.size, args.dip_batches, args.warmup, args.timed = "cpu", 32, [1, 2], 1, 2
        args.dip_batch, args.dip_mode = 2, "fp32"
        args.cw_archs, args.cw_batch, args.cw_steps = ["tiny"], 2, 2
        args.train_archs, args.train_batch, args.train_warmup, args.train_steps = ["tiny", "resnet18"], 2, 1, 1

    started = time.perf_counter()
    if args.multi:
        run_part(args)
        return
    rows = run_part(args)
    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    nproc = 2 if args.smoke else gpus
    if not args.no_multi and nproc > 1:
        rows += launch_multi(args, nproc)
    print(json.dumps({"bench": "suite", "elapsed_s": time.perf_counter() - started}), flush=True)
    print(table(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
