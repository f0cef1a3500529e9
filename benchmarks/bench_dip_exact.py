"""Exact DIP gradients: seconds and peak memory per gradient against one DIP fit, per checkpoint segment length.

For each image size, times in a fresh process (so that its peak resident memory is its own):
one plain DIP fit to ``--at`` iterations (the baseline, :func:`dfrobust.defenses.dip.dip_purify`)
and one exact gradient (:func:`dfrobust.defenses.dip_exact.dip_exact`, forward and backward) for
each segment length. Prints one JSON line per run and, per size, the segment length that
minimises time within ``--mem-cap-gb``. Also prints the gradient's norm: how large the exact
gradient through Adam's normalised steps is.

    .venv/bin/python benchmarks/bench_dip_exact.py                           # 32 and 64 px, T = 100, 4 images
    .venv/bin/python benchmarks/bench_dip_exact.py --sizes 32 --at 600 --segments 10 25 50 --images 2
    .venv/bin/python benchmarks/bench_dip_exact.py --chaos 5 20 50 --data runs/quick/data   # is the gradient informative?

``--chaos T ...`` instead prints, for two test fakes of ``--data`` and each T, the exact gradient's
norm, the cosine and sign agreement between the gradients of two DIP draws of the same image, and
the cosine with the last-4-steps unrolled gradient (of a fixed random projection of the output).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(kind: str, size: int, at: int, images: int, segment: int, threads: int) -> dict:
    """Run one measurement in this process: ``kind`` is ``fit`` or ``exact``."""
    import torch

    from dfrobust.defenses.dip import DipConfig, dip_purify
    from dfrobust.defenses.dip_exact import dip_exact

    torch.set_num_threads(threads)
    cfg = DipConfig(iterations=at)
    x = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    dip_purify(x, DipConfig(iterations=2), iteration=2)  # warm-up: the first call sets up the kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    row: dict = {"kind": kind, "size": size, "at": at, "images": images}
    if kind == "fit":
        dip_purify(x, cfg, iteration=at)
    else:
        xr = x.clone().requires_grad_(True)
        out = dip_exact(xr, list(range(images)), cfg, at, segment=segment)
        forward = time.perf_counter() - start
        (grad,) = torch.autograd.grad(out.sum(), xr)
        row |= {"segment": segment, "forward_s": round(forward, 2), "grad_norm": float(grad.norm())}
    row["seconds"] = round(time.perf_counter() - start, 2)
    # ru_maxrss is in KiB on Linux; what this measurement added over the interpreter and torch
    row["peak_gb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 2**20, 3)
    return row


def chaos(data: str, ats: list[int]) -> None:
    """How the exact gradient depends on the DIP draw: one JSON line per T."""
    import torch
    import torch.nn.functional as F

    from dfrobust.data.layouts import load_images
    from dfrobust.defenses.dip import DipConfig
    from dfrobust.defenses.dip_exact import dip_exact
    from dfrobust.defenses.dip_unroll import dip_unrolled

    images, _ = load_images(data, "test", ["fake"], limit=2, seed=0)
    x = images.images(slice(0, 2))
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))

    def grad(fn) -> torch.Tensor:
        xr = x.clone().requires_grad_()
        (g,) = torch.autograd.grad((fn(xr) * w).sum(), xr)
        return g.flatten(1)

    for at in ats:
        cfg = DipConfig(iterations=at)
        a, b = grad(lambda z: dip_exact(z, [1, 2], cfg, at)), grad(lambda z: dip_exact(z, [11, 12], cfg, at))
        u = grad(lambda z: dip_unrolled(z, [1, 2], cfg, at, 4))
        row = {"at": at, "norm": a.norm(dim=1).tolist(), "cos_draws": F.cosine_similarity(a, b).tolist(),
               "sign_agreement_draws": (a.sign() == b.sign()).float().mean(1).tolist(), "cos_unroll4": F.cosine_similarity(a, u).tolist()}  # fmt: skip
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--at", type=int, default=100, help="DIP's output iteration (the defense's classify_at)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 5, 10, 20, 50], help="steps per recomputed segment")
    parser.add_argument("--mem-cap-gb", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chaos", type=int, nargs="+", metavar="T", help="the draw-dependence check at these T (needs --data)")
    parser.add_argument("--data", help="a dataset folder (its test fakes) for --chaos")
    parser.add_argument("--one", nargs=5, metavar=("KIND", "SIZE", "AT", "IMAGES", "SEGMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chaos:
        if not args.data:
            raise SystemExit("--chaos needs --data DIR")
        chaos(args.data, args.chaos)
        return
    if args.one:
        kind, *nums = args.one
        print(json.dumps(one(kind, *(int(v) for v in nums), args.threads)))
        return
    for size in args.sizes:
        runs = [("fit", 0)] + [("exact", s) for s in args.segments if s <= max(args.at - 1, 1)]
        rows = []
        for kind, segment in runs:
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--one",
                kind,
                str(size),
                str(args.at),
                str(args.images),
                str(segment),
            ]
            row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
        fit = rows[0]["seconds"]
        fitting = [r for r in rows[1:] if r["peak_gb"] <= args.mem_cap_gb]
        if fitting:
            best = min(fitting, key=lambda r: r["seconds"])
            print(
                f"{size} px, T = {args.at}, {args.images} images: one DIP fit {fit:.1f} s; best exact gradient within "
                f"{args.mem_cap_gb:g} GB: segment {best['segment']}, {best['seconds']:.1f} s ({best['seconds'] / fit:.1f}x the fit), "
                f"peak {best['peak_gb']:.2f} GB, gradient norm {best['grad_norm']:.3g}"
            )
        else:
            print(f"{size} px: no segment length fits {args.mem_cap_gb:g} GB")


if __name__ == "__main__":
    main()
