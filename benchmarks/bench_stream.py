"""Evaluating a folder in place: images/s and peak resident memory at 2,000 and 20,000 images (64 px).

The issue's target: peak memory does not grow with the number of images; a 20,000-image folder at
64 px stays under 2 GB resident. For each size the script writes a CNNDetection-style folder of
PNGs (``test/gen{k}/0_real``, ``test/gen{k}/1_fake``) into a temporary folder, then evaluates the
``tiny`` detector on it in a fresh process (so each peak RSS is that size's own) through
``evaluate_items`` (lazy ``Dataset`` + ``DataLoader``), and prints one JSON line per size:
``images``, ``seconds``, ``images_per_s``, ``rss_before_mb`` (main process once the model is built
and the folder scanned), ``peak_rss_mb`` (main process), ``growth_mb`` (peak minus before: what the
loop itself adds, which should not depend on the number of images) and ``peak_rss_children_mb``
(the largest loader worker).

Timings on a shared machine are noisy. Example::

    python benchmarks/bench_stream.py                 # 2,000 and 20,000 images
    python benchmarks/bench_stream.py --smoke         # 200 and 400 images at 32 px: checks that it runs
    python benchmarks/bench_stream.py --gradients     # also the input-gradient norms (evaluate's default)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root: Path, n: int, size: int, generators: int = 4, seed: int = 0) -> None:
    """``n`` random-noise PNGs split over generators and classes (their content does not matter here)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / "test" / f"gen{i % generators}" / ("1_fake" if (i // generators) % 2 else "0_real")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def rss_mb() -> float:
    """This process's current resident memory in MB (``VmRSS``; 0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")), 0.0)
    except OSError:
        return 0.0


def evaluate_once(folder: Path, size: int, batch_size: int, workers: int, gradients: bool = False) -> dict[str, object]:
    """Evaluate the tiny detector on ``folder`` (run in its own process); returns the measurements."""
    import torch

    from dfrobust.data.layouts import scan_layout
    from dfrobust.evaluate.evaluation import evaluate_items
    from dfrobust.models.detectors import build_detector

    torch.manual_seed(0)
    model = build_detector("tiny").eval()
    layout = scan_layout(folder)
    before = rss_mb()
    t0 = time.perf_counter()
    out = evaluate_items(model, layout.items, (size, size), batch_size, "cpu", gradients=gradients, workers=workers)
    seconds = time.perf_counter() - t0
    n = out["metrics"]["n"]
    kib = 1024  # ru_maxrss is in KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    return {
        "images": n,
        "seconds": round(seconds, 2),
        "images_per_s": round(n / seconds, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "growth_mb": round(peak - before, 1),
        "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib, 1),
        "skipped": len(out["skipped"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="image counts (default: 2000 20000)")
    parser.add_argument("--px", type=int, default=64, help="image side (default: 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gradients", action="store_true", help="also compute the input-gradient norms")
    parser.add_argument("--smoke", action="store_true", help="200 and 400 images at 32 px")
    parser.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(evaluate_once(Path(args.child), args.px, args.batch_size, args.workers, args.gradients)), flush=True)
        return 0
    if args.smoke:
        args.sizes, args.px = [200, 400], 32
    print(json.dumps({"measure": "machine", "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_folder(Path(tmp) / "data", n, args.px)
            written = time.perf_counter() - t0
            cmd = [sys.executable, __file__, "--child", str(Path(tmp) / "data"), "--px", str(args.px),
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers)] + ["--gradients"] * args.gradients  # fmt: skip
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            print(json.dumps({"measure": "evaluate_in_place", "px": args.px, "workers": args.workers, "gradients": args.gradients,
                              "write_seconds": round(written, 2), **result}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
