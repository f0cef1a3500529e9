"""DIP purification speed: batched networks against the serial baseline, measured in the same run.

For each image size (64 and 128 px by default) and batch size (1, 8, 32), times DIP iterations
of :class:`dfrobust.defenses.dip.DipRun` (the paper's network, one per image). The serial
baseline is the same code with one image at a time (batch 1). Configurations are timed in
interleaved rounds so that load from other processes hits them alike, each round over about
the same number of image-iterations (a serial step is short and noisy when timed over a few
steps only); the median over rounds is reported. One JSON line per (size, batch) with iterations/s per image, images/hour at the
paper's 10,000 iterations and the ratio against serial (target: >= 3x at 64 px on the 2-core
CPU). ``--compare-vmap`` also times the alternative design (torch.func.vmap over stacked
parameters of single-image networks) at the same batch sizes.

    .venv/bin/python benchmarks/bench_dip.py                      # 64 and 128 px, batches 1 8 32
    .venv/bin/python benchmarks/bench_dip.py --sizes 64 --compare-vmap --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

from dfrobust.defenses.dip import DipConfig, DipRun, build_dip_net
from dfrobust.defenses.dip_net import padded_size
from dfrobust.utils.runtime import resolve_device

PAPER_ITERATIONS = 10_000


class VmapRun:
    """The rejected design, for comparison: single-image networks stacked and run under vmap."""

    def __init__(self, images: torch.Tensor, seeds: list[int], cfg: DipConfig, device: torch.device) -> None:
        nets = [build_dip_net(cfg, 1).init_([torch.Generator().manual_seed(s)]) for s in seeds]
        for net in nets:
            replace_all_batch_norm_modules_(net)  # batch statistics only: no running-stat writes under vmap
        params, buffers = stack_module_state(nets)
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        base = copy.deepcopy(nets[0]).to("meta")

        def one(p: dict, b: dict, z: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (z.unsqueeze(0),)).squeeze(0)

        self.fn = vmap(one)
        side = padded_size(images.shape[-1], 2 ** len(cfg.channels_down))
        self.z = torch.rand(len(seeds), cfg.input_channels, side, side, device=device) * cfg.input_scale
        self.target = torch.nn.functional.pad(images.to(device), [(side - images.shape[-1]) // 2] * 4, mode="reflect")
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.noise = torch.empty_like(self.z)
        self.opt = torch.optim.Adam(self.params.values(), lr=cfg.lr, fused=True)
        self.std = cfg.reg_noise_std

    def step(self) -> None:
        for b, gen in enumerate(self.gens):
            self.noise[b].normal_(generator=gen)
        out = self.fn(self.params, self.buffers, self.z + self.noise * self.std)
        loss = (out - self.target).pow(2).flatten(1).mean(1).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--steps", type=int, default=3, help="timed iterations of the largest batch per round (smaller batches run proportionally more)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--compare-vmap", action="store_true", help="also time the vmap design at batch sizes > 1")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = DipConfig()
    load_before = os.getloadavg()[0]

    for size in args.sizes:
        runs: dict[tuple[str, int], Callable[[], object]] = {}
        for bsz in sorted(set(args.batch_sizes) | {1}):
            images = torch.rand(bsz, 3, size, size, generator=torch.Generator().manual_seed(bsz))
            seeds = list(range(bsz))
            runs[("grouped", bsz)] = DipRun(images, seeds, cfg, device).step
            if args.compare_vmap and bsz > 1:
                runs[("vmap", bsz)] = VmapRun(images, seeds, cfg, device).step
        times: dict[tuple[str, int], list[float]] = {k: [] for k in runs}
        # every configuration purifies about the same number of image-iterations per round, so
        # the short serial steps are not timed over a window that one scheduler hiccup dominates
        largest = max(b for _, b in runs)
        steps = {key: max(args.steps, round(args.steps * largest / key[1])) for key in runs}
        for step in runs.values():
            step()  # warm-up: kernel selection, allocator
        for _ in range(args.rounds):
            for key, step in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps[key]):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[key].append((time.perf_counter() - start) / steps[key])
        serial = statistics.median(times[("grouped", 1)])
        for (engine, bsz), ts in times.items():
            sec = statistics.median(ts)
            per_image_it_s = bsz / sec
            print(json.dumps({
                "bench": "dip",
                "engine": "serial" if bsz == 1 else engine,
                "size": size,
                "padded_to": padded_size(size, 32),
                "batch": bsz,
                "sec_per_iteration": round(sec, 5),
                "iterations_per_s_per_image": round(per_image_it_s, 3),
                "images_per_hour_at_10000": round(3600 * per_image_it_s / PAPER_ITERATIONS, 2),
                "ratio_vs_serial": round(serial * bsz / sec, 2),
                "rounds": [round(t, 4) for t in ts],
                "device": str(device),
                "threads": torch.get_num_threads(),
            }), flush=True)  # fmt: skip
    print(json.dumps({"bench": "dip", "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
                      "torch": torch.__version__, "note": "shared CPU: timings are noisy; compare ratios measured in the same run"}))  # fmt: skip


if __name__ == "__main__":
    main()
