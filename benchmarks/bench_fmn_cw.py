"""FMN-L2 vs CW-L2 on the same images: minimal L2 norms found, and the gradient steps each spent.

Both are minimal-norm attacks: per image, the smallest L2 perturbation that flips the
detector. FMN adapts its radius every step; CW searches its constant ``c`` with a full Adam run
per search step. On the same fakes, each setup prints one JSON line: success rate (with n),
median and quartiles of the L2 of successful images, the gradient steps per image, seconds.
Fewer steps for the same median L2 is FMN's claim (Pintor et al. 2021, Table 2).

By default a tiny detector is trained in-script on toy images (fakes carry a faint checkerboard);
``--data DIR --model CKPT`` attacks a real detector's test fakes instead::

    .venv/bin/python benchmarks/bench_fmn_cw.py --images 32
    .venv/bin/python benchmarks/bench_fmn_cw.py --data runs/quick/data --model runs/quick/models/resnet18.safetensors --images 32
    .venv/bin/python benchmarks/bench_fmn_cw.py --smoke    # seconds: checks the script, measures nothing

CW with kappa 0 is run beside the paper's kappa 200: CW at kappa 200 asks for a confident flip,
which costs L2, so only kappa 0 compares minimal norms like for like.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dfrobust.attacks.base import make_attack


def toy_images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random colour fields; fakes (label 0, even rows) get a faint checkerboard in the centre."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = 0.2 + 0.6 * torch.rand(n, 3, 1, 1, generator=gen)
    slope = (torch.rand(n, 3, 2, generator=gen) - 0.5) * 0.6
    x = base + slope[..., 0, None, None] * xx + slope[..., 1, None, None] * yy
    x = x + torch.randn(x.shape, generator=gen) * 0.02
    y = torch.arange(n) % 2
    q = size // 4
    checker = ((torch.arange(2 * q)[:, None] + torch.arange(2 * q)[None]) % 2 * 2 - 1).float() * 0.12
    x[y == 0, :, q : 3 * q, q : 3 * q] += checker
    return x.clamp(0, 1), y


def toy_detector(size: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A ``tiny`` detector trained on toy images, and fresh toy fakes it classifies."""
    from dfrobust.models.detectors import build_detector

    torch.manual_seed(seed)
    x, y = toy_images(96, size, seed)
    model = build_detector("tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    xt, yt = toy_images(400, size, seed + 1)
    return model.eval(), xt[yt == 0], yt[yt == 0]


def real_detector(data: str, model_path: str, n: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A saved detector and its dataset's test fakes."""
    from dfrobust.data.dataset import load_split
    from dfrobust.models.checkpoint import load_detector

    model, _ = load_detector(model_path)
    fakes = load_split(data, "test", classes=["fake"], limit=n, seed=seed)
    return model.eval(), fakes.images(), fakes.y


def summary(name: str, result, steps_per_image: float, seconds: float) -> dict:
    """One JSON-able line: success with n, L2 quartiles of the successful images, cost."""
    ok = result.success
    l2 = result.l2[ok]
    q = torch.quantile(l2, torch.tensor([0.25, 0.5, 0.75])).tolist() if len(l2) else [None] * 3
    return {
        "setup": name, "n": len(ok), "success": int(ok.sum()),
        "q1_l2": q[0], "median_l2": q[1], "q3_l2": q[2],
        "grad_steps_per_image": steps_per_image, "seconds": round(seconds, 2),
    }  # fmt: skip


def main() -> None:
    """Parse the arguments, attack the same fakes with each setup, print one JSON line per setup."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="toy image size (in-script detector only)")
    ap.add_argument("--data", help="dataset folder (with --model)")
    ap.add_argument("--model", help="detector checkpoint (with --data)")
    ap.add_argument("--fmn-steps", type=int, nargs="+", default=[25, 100, 300])
    ap.add_argument("--cw-steps", type=int, nargs="+", default=[100, 1000], help="Adam steps per search step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = ap.parse_args()
    if args.smoke:
        args.images, args.size, args.fmn_steps, args.cw_steps = 4, 16, [5], [5]
    if args.data and args.model:
        model, x, y = real_detector(args.data, args.model, args.images, args.seed)
    else:
        model, x, y = toy_detector(args.size, args.seed)
        x, y = x[: args.images], y[: args.images]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]  # an image already misclassified needs no attack
    setups = [(f"fmn-l2 steps={s}", make_attack("fmn", norm="l2", steps=s), None) for s in args.fmn_steps]
    for kappa in (0.0, 200.0):
        for s in args.cw_steps:
            setups.append((f"cw kappa={kappa:g} steps={s}x5", make_attack("cw", kappa=kappa, max_steps=s), "adam_steps"))
    for name, attack, steps_key in setups:
        start = time.perf_counter()
        result = attack(model, x, y)
        seconds = time.perf_counter() - start
        steps = float(result.extras[steps_key].float().mean()) if steps_key else float(attack.steps)
        print(json.dumps(summary(name, result, steps, seconds)), flush=True)


if __name__ == "__main__":
    main()
