"""DIP on a GPU: images/hour at the paper's 6,000 iterations for 256x256 inputs, batch sizes up to memory.

One prepared call (under 10 minutes on one H100): for each precision / memory-format mode
(fp32, bf16 autocast, each with and without channels-last) and each batch size (doubling until
out of memory or the time budget), times ``--timed`` iterations of
:class:`dfrobust.defenses.dip.DipRun` after ``--warmup`` ones and extrapolates to 6,000
iterations. Prints one JSON line per (mode, batch) and a final line with the best
configuration, the same measured with the study's recording (a ResNet-18 classifier on the raw
and averaged outputs every 10 iterations), and the target check (<= 10 s per image amortised;
the paper: ~30 min per image on a K80).

    python benchmarks/gpu_dip.py                     # on the GPU machine
    python benchmarks/gpu_dip.py --quick --device cpu   # tiny settings: proves the script runs
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dfrobust.defenses.dip import DipConfig, DipRun, record_sample
from dfrobust.models.detectors import build_detector
from dfrobust.utils.runtime import resolve_device, versions

MODES = {
    "fp32": {"amp": "none", "channels_last": False},
    "fp32-cl": {"amp": "none", "channels_last": True},
    "bf16": {"amp": "bf16", "channels_last": False},
    "bf16-cl": {"amp": "bf16", "channels_last": True},
}
TARGET_SECONDS_PER_IMAGE = 10.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_config(
    size: int,
    batch: int,
    mode: str,
    device: torch.device,
    warmup: int,
    timed: int,
    classifier: torch.nn.Module | None = None,
    record_every: int = 10,
) -> dict:
    """Seconds per iteration of one batch (and peak memory); with a classifier, include the recording."""
    cfg = DipConfig(**MODES[mode])
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch), device="cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = DipRun(images.to(device), list(range(batch)), cfg, device)
    rows: dict = {k: [] for k in ("raw", "avg", "mse", "psnr_clean")}
    for _ in range(warmup):
        run.step()
    _sync(device)
    start = time.perf_counter()
    for i in range(1, timed + 1):
        out = run.step()
        if classifier is not None and i % record_every == 0:
            record_sample(rows, out, run.avg, run.x, None, classifier)
    _sync(device)
    sec = (time.perf_counter() - start) / timed
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"sec_per_iteration": sec, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timed", type=int, default=30)
    parser.add_argument("--paper-iterations", type=int, default=6000, help="iterations per image to extrapolate to")
    parser.add_argument("--budget", type=float, default=420.0, help="stop starting new configurations after this many seconds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny settings (64 px, batches 1 2, 2 iterations): a smoke run on any device")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch_sizes, args.warmup, args.timed = 64, [1, 2], 1, 2
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(json.dumps({"bench": "gpu_dip", "device": str(device), "versions": versions(), "size": args.size}), flush=True)

    t0 = time.perf_counter()
    results = []
    for mode in args.modes:
        for batch in sorted(args.batch_sizes):
            if time.perf_counter() - t0 > args.budget:
                print(json.dumps({"bench": "gpu_dip", "mode": mode, "batch": batch, "skipped": "time budget"}), flush=True)
                continue
            try:
                r = time_config(args.size, batch, mode, device, args.warmup, args.timed)
            except torch.OutOfMemoryError:
                print(json.dumps({"bench": "gpu_dip", "mode": mode, "batch": batch, "oom": True}), flush=True)
                torch.cuda.empty_cache()
                break
            per_image = r["sec_per_iteration"] * args.paper_iterations / batch
            row = {"bench": "gpu_dip", "mode": mode, "batch": batch, "size": args.size, **r,
                   "seconds_per_image": per_image, "images_per_hour": 3600.0 / per_image}  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not results:
        return
    best = min(results, key=lambda r: r["seconds_per_image"])
    classifier = build_detector("resnet18").to(device).eval()
    rec = time_config(args.size, best["batch"], best["mode"], device, args.warmup, max(args.timed, 10), classifier)
    with_rec = rec["sec_per_iteration"] * args.paper_iterations / best["batch"]
    serial = next((r for r in results if r["batch"] == min(args.batch_sizes) and r["mode"] == "fp32"), None)
    print(json.dumps({
        "bench": "gpu_dip", "best": {k: best[k] for k in ("mode", "batch", "seconds_per_image", "images_per_hour")},
        "seconds_per_image_with_recording": with_rec,
        "target_seconds_per_image": TARGET_SECONDS_PER_IMAGE, "meets_target": best["seconds_per_image"] <= TARGET_SECONDS_PER_IMAGE,
        "speedup_vs_paper_30min": 1800.0 / best["seconds_per_image"],
        "ratio_vs_smallest_fp32_batch": serial["seconds_per_image"] / best["seconds_per_image"] if serial else None,
        "elapsed_s": time.perf_counter() - t0,
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
