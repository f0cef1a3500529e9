"""Speed of the synthetic face generator (target: >= 100 images/s at 64 px, PNG writing included).

Prints JSON lines:
  * ``generate``: ``generate_synthetic`` end to end (render, swap, JPEG, PNG + manifest writing);
  * ``pixels_batched`` vs ``pixels_per_image``: the pixel pipeline in chunks of 32 against the
    same pipeline called one image at a time (the baseline), measured in the same run, and
    their ratio;
  * ``pixels_batched_default_threads``: the batched pipeline with torch's default intra-op
    threads instead of one (what ``generate_synthetic`` uses), and the ratio;
  * ``png_writing``: the dataset writer alone on ready-made images (the I/O floor).

Timings on a shared machine are noisy; compare ratios from one run. Example::

    python benchmarks/bench_synth.py --n 1000 --size 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dfrobust.data.manifest import DatasetWriter
from dfrobust.data.knobs import SynthKnobs
from dfrobust.data.synthetic import CHUNK, generate_synthetic, plan_synthetic, render_chunk
from dfrobust.data.threads import single_threaded_torch


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images generated end to end (default: 1000)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--baseline-n", type=int, default=96, help="images for the one-at-a-time baseline (default: 96)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DFROBUST_QUIET", "1")
    emit(measure="machine", cpus=os.cpu_count(), load_average=[round(x, 2) for x in os.getloadavg()])

    plan_synthetic(16, 0, 0.25, SynthKnobs())  # warm-up: imports, triangulation
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_synthetic(Path(tmp) / "d", n=args.n, size=args.size, seed=0)
        dt = time.perf_counter() - t0
        emit(measure="generate", n=args.n, size=args.size, seconds=round(dt, 2), images_per_s=round(args.n / dt, 1), target=">= 100")

        m = args.baseline_n
        plan = plan_synthetic(m, 0, 0.25, SynthKnobs())

        def batched() -> list[np.ndarray]:
            return [render_chunk(plan, np.arange(s, min(m, s + CHUNK)), args.size, np.random.default_rng(s)) for s in range(0, m, CHUNK)]

        def per_image() -> None:
            for i in range(m):
                render_chunk(plan, np.array([i]), args.size, np.random.default_rng(i))

        rate_threads = m / timed(batched)  # torch's default intra-op threads, as before the fix
        with single_threaded_torch():
            rate_batched, rate_single = m / timed(batched), m / timed(per_image)
            pixels = batched()
        emit(measure="pixels_batched", images_per_s=round(rate_batched, 1), chunk=CHUNK, n=m, torch_threads=1)
        emit(measure="pixels_per_image", images_per_s=round(rate_single, 1), n=m, note="baseline: same pipeline, one image per call")
        emit(measure="batching_speedup", ratio=round(rate_batched / rate_single, 2))
        emit(measure="pixels_batched_default_threads", images_per_s=round(rate_threads, 1), torch_threads=torch.get_num_threads(),
             single_thread_speedup=round(rate_batched / rate_threads, 2))  # fmt: skip

        images = np.concatenate(pixels)
        t0 = time.perf_counter()
        with DatasetWriter(Path(tmp) / "w", created_by={"command": "bench"}) as writer:
            for i, img in enumerate(images):
                writer.add(img, label=i % 2, split="train")
        emit(measure="png_writing", images_per_s=round(m / (time.perf_counter() - t0), 1), n=m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
