"""DIP early stopping (ES-WMV) against a fixed classification iteration T, measured in the same run.

On a handful of synthetic faces (rendered in memory, with Gaussian noise standing in for a
perturbation), fits the paper's DIP network to each image twice with the same seeds: once up to
T (the fixed-T defense), once with ES-WMV (``DipConfig.early_stop``) capped at ``--iterations``.
The batch runs until every image has stopped, so the iterations a batch saves are
``T - steps``; each image's own stop (``stopped_at``) says what a batch that dropped stopped
images would save. Prints one JSON line per image size: iterations run, per-image stop points,
time per image (amortised over the batch), and the PSNR to the clean face of the kept outputs
(ES at each image's detected point, fixed at T).

    .venv/bin/python benchmarks/bench_dip_es.py                          # 32 and 64 px, 4 faces, paper W/P
    .venv/bin/python benchmarks/bench_dip_es.py --sizes 32 --n 2 --iterations 60 --classify-at 40 --window 5 --patience 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch

from dfrobust.data.knobs import SynthKnobs
from dfrobust.data.swap import as_tensor_images
from dfrobust.data.synthetic import plan_synthetic, render_chunk
from dfrobust.defenses.dip import DipConfig, default_classify_at, purify_batch
from dfrobust.evaluate.image_metrics import mse, psnr_from_mse
from dfrobust.utils.runtime import resolve_device


def faces(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` synthetic faces (real and fake) as ``n x 3 x size x size`` in ``[0, 1]``."""
    plan = plan_synthetic(max(8, n), seed, 0.25, SynthKnobs())
    return as_tensor_images(render_chunk(plan, np.arange(n), size, np.random.default_rng(seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--n", type=int, default=4, help="faces (one batch)")
    parser.add_argument("--iterations", type=int, default=DipConfig.iterations, help="early stopping's cap (the run's length)")
    parser.add_argument("--classify-at", type=int, default=None, help="the fixed T (default: 60%% of --iterations)")
    parser.add_argument("--window", type=int, default=DipConfig.es_window)
    parser.add_argument("--patience", type=int, default=DipConfig.es_patience)
    parser.add_argument("--noise", type=float, default=8 / 255, help="std of the Gaussian noise added to the faces")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    t_fixed = args.classify_at or default_classify_at(args.iterations)
    base = DipConfig(iterations=args.iterations, record_every=args.iterations)
    es_cfg = dataclasses.replace(base, early_stop=True, es_window=args.window, es_patience=args.patience)
    load_before = os.getloadavg()[0]

    for size in args.sizes:
        clean = faces(args.n, size)
        x = (clean + args.noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(size))).clamp(0, 1)
        seeds = list(range(args.n))

        def timed(cfg: DipConfig, stop_at: int):  # noqa: ANN202
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            traj = purify_batch(x, seeds, cfg, stop_at=stop_at, device=device, show_progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return traj, time.perf_counter() - start

        timed(base, 2)  # warm-up: kernel selection, allocator
        fixed, sec_fixed = timed(base, t_fixed)
        es, sec_es = timed(es_cfg, args.iterations)
        stopped = es.es_stopped_at.tolist()
        print(json.dumps({
            "bench": "dip_es",
            "size": size,
            "images": args.n,
            "window": args.window,
            "patience": args.patience,
            "fixed_T": t_fixed,
            "cap": args.iterations,
            "es_steps": es.steps,
            "iterations_saved_batch": t_fixed - es.steps,
            "es_iteration": es.es_iteration.tolist(),
            "es_stopped_at": stopped,
            "stopped": sum(s > 0 for s in stopped),
            "iterations_saved_per_image_mean": round(float(np.mean([t_fixed - (s or es.steps) for s in stopped])), 1),
            "sec_per_image_fixed": round(sec_fixed / args.n, 4),
            "sec_per_image_es": round(sec_es / args.n, 4),
            "time_ratio_es_vs_fixed": round(sec_es / sec_fixed, 3),
            "psnr_clean_fixed": round(float(psnr_from_mse(mse(fixed.final, clean)).mean()), 2),
            "psnr_clean_es": round(float(psnr_from_mse(mse(es.es_output, clean)).mean()), 2),
            "psnr_clean_input": round(float(psnr_from_mse(mse(x, clean)).mean()), 2),
            "device": str(device),
            "threads": torch.get_num_threads(),
        }), flush=True)  # fmt: skip
    print(json.dumps({"bench": "dip_es", "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
                      "torch": torch.__version__, "note": "shared CPU: timings are noisy; compare ratios measured in the same run"}))  # fmt: skip


if __name__ == "__main__":
    main()
