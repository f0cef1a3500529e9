"""Which BPDA stand-in attacks DIP best? APGD through DIP with each backward pass, on the same images.

A tiny detector is trained in-script on toy faces-free images whose fakes carry a faint
low-frequency tint blob (a feature DIP's low-pass reconstruction keeps, so the defense holds on
clean images and there is something to attack). The same fakes are then attacked with APGD
(Linf) through a small DIP with each stand-in of :mod:`dfrobust.defenses.adaptive`
(``identity``, ``fitted-blur``, ``unroll``) and, as the baseline, on the bare detector
(non-adaptive). Every adversarial image is evaluated as stored (8-bit) through the defense's
own DIP, on one draw and on the worst of ``--eval-draws``. Prints one JSON line per setup;
lower accuracy means a stronger attack::

    .venv/bin/python benchmarks/bench_adaptive.py --images 16 --steps 20 --eot 2
    .venv/bin/python benchmarks/bench_adaptive.py --smoke    # seconds: checks the script, measures nothing
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from dfrobust.attacks.base import make_attack
from dfrobust.defenses.adaptive import PurifiedModel, evaluate_through
from dfrobust.defenses.base import make_purifier
from dfrobust.models.detectors import build_detector
from dfrobust.utils.io import quantize


def toy_images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random colour fields; fakes (label 0, even rows) get a soft reddish blob in the centre."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = 0.2 + 0.6 * torch.rand(n, 3, 1, 1, generator=gen)
    slope = (torch.rand(n, 3, 2, generator=gen) - 0.5) * 0.3
    x = base + slope[..., 0, None, None] * xx + slope[..., 1, None, None] * yy
    x = x + torch.randn(x.shape, generator=gen) * 0.02
    y = torch.arange(n) % 2
    blob = torch.exp(-(xx**2 + yy**2) / 0.3) * 0.1
    x[y == 0, 0] += blob
    x[y == 0, 2] -= blob
    return x.clamp(0, 1), y


def train_detector(size: int, steps: int, seed: int) -> torch.nn.Module:
    x, y = toy_images(256, size, seed)
    torch.manual_seed(seed)
    model = build_detector("tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="fakes attacked")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--steps", type=int, default=20, help="APGD steps")
    parser.add_argument("--eot", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=300, help="DIP iterations of the defense (classified at 60%%)")
    parser.add_argument("--attack-iterations", type=int, default=150, help="DIP iterations the attack sees")
    parser.add_argument("--unroll-steps", type=int, default=4)
    parser.add_argument("--eval-draws", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["identity", "fitted-blur", "unroll"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="4 images, 2 steps, a 10-iteration DIP: checks the script, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.steps, args.iterations, args.attack_iterations, args.eval_draws, args.size = 4, 2, 10, 6, 2, 16

    dip = {"input_channels": 8, "channels_down": (16, 32, 64), "channels_up": (16, 32, 64), "channels_skip": (4, 4, 4)}
    defense = make_purifier("dip", iterations=args.iterations, **dip)
    at_attack = make_purifier("dip", iterations=args.attack_iterations, **dip)
    model = train_detector(args.size, 10 if args.smoke else 200, args.seed)
    x_all, y_all = toy_images(4 * args.images, args.size, args.seed + 1)
    x, y = x_all[y_all == 0][: args.images], y_all[y_all == 0][: args.images]
    common = {"images": len(x), "size": args.size, "eps": args.eps, "steps": args.steps, "eot": args.eot,
              "iterations": args.iterations, "attack_iterations": args.attack_iterations, "eval_draws": args.eval_draws,
              "smoke": args.smoke}  # fmt: skip

    def report(setup: str, images: torch.Tensor, **extra: object) -> None:
        res = evaluate_through(model, defense, images, y, draws=args.eval_draws, seed=args.seed)
        with torch.no_grad():
            bare = float((model(images).argmax(1) == y).float().mean())
        print(json.dumps({"bench": "adaptive_dip", "setup": setup, "accuracy_unpurified": bare,
                          "accuracy_one": res["accuracy_one"], "accuracy_worst": res["accuracy_worst"], **extra, **common}),
              flush=True)  # fmt: skip

    report("clean", x)
    attack = make_attack("apgd", eps=args.eps, steps=args.steps, seed=args.seed)
    report("nonadaptive", quantize(attack(model, x, y).x_adv))
    for mode in args.modes:
        through = PurifiedModel(model, at_attack, mode, args.eot, args.seed, args.unroll_steps)
        x_adv = quantize(attack(through, x, y).x_adv)
        sigma = through.sigma_mean
        report(f"bpda-{mode}", x_adv, fitted_sigma=None if sigma is None or math.isnan(sigma) else sigma)


if __name__ == "__main__":
    main()
