"""The ``--suite`` mode of bench_apgd_square.py: robust accuracy by dfrobust's survivors-only chain vs torchattacks on all images.

dfrobust: APGD-CE on every image, then APGD with the margin loss on the images it left correct, then
Square on the images both left correct (the presets' ``survivors_of`` chain, AutoAttack's order).
torchattacks: ``APGD(loss="ce")``, an APGD whose DLR loss is replaced by the margin loss (torchattacks'
DLR indexes a third logit that a 2-class detector lacks) and ``Square``, each on every image, one
after another (what a user without a chain runs). An image counts as fooled when the model
misclassifies the 8-bit rounding of an attack's output, on both sides; robust accuracy is the share
of images no attack of the suite fooled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _fooled(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The project's success: the model misclassifies the 8-bit rounding of the adversarial image."""
    from dfrobust.utils.io import quantize

    with torch.no_grad():
        return (model(quantize(x_adv.detach().float().clamp(0, 1))).argmax(1) != y).cpu()


def _timed(attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, float]:
    """``attack`` over ``x`` in batches: the adversarial images and the seconds it took."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = [attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    if x.is_cuda:
        torch.cuda.synchronize()
    return (torch.cat(out) if out else x[:0]), time.perf_counter() - start


def _chain(
    side: str, steps: list[tuple[str, Attack]], model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, survivors_only: bool
) -> dict:
    """Run ``steps`` in order; each on the images no earlier step fooled (``survivors_only``) or on all of them."""
    fooled = torch.zeros(len(x), dtype=torch.bool)
    total = 0.0
    for name, attack in steps:
        rows = (~fooled).nonzero().squeeze(1) if survivors_only else torch.arange(len(x))
        x_adv, seconds = _timed(attack, x[rows.to(x.device)], y[rows.to(y.device)], batch_size)
        fooled[rows] |= _fooled(model, x_adv, y[rows.to(y.device)]) if len(rows) else torch.zeros(0, dtype=torch.bool)
        total += seconds
        robust = 1 - fooled.float().mean().item()
        line = {"suite": side, "method": name, "images_attacked": len(rows), "seconds": round(seconds, 3),
                "robust_accuracy_so_far": round(robust, 4)}  # fmt: skip
        print(json.dumps(line), flush=True)
    return {"suite": side, "n_images": len(x), "robust_accuracy": round(1 - fooled.float().mean().item(), 4),
            "robust": int((~fooled).sum()), "seconds": round(total, 3)}  # fmt: skip


def run_suite(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> int:
    """Print both suites' per-method lines, their totals and the ratio of total seconds (JSON lines on stdout)."""
    from dfrobust.attacks.base import make_attack

    def ours(name: str, **params: object) -> Attack:
        attack = make_attack(name, norm=args.norm, eps=args.eps, seed=args.seed, **params)
        return lambda a, b: attack(model, a, b).x_adv

    mine = [
        ("dfrobust apgd-ce", ours("apgd", steps=args.steps, loss="ce")),
        ("dfrobust apgd-margin", ours("apgd", steps=args.steps, loss="margin")),
        ("dfrobust square", ours("square", queries=args.queries, p_init=args.p_init)),
    ]
    results = [_chain("dfrobust (survivors only)", mine, model, x, y, args.batch_size, survivors_only=True)]
    try:
        import torchattacks
    except ImportError:
        print(json.dumps({"suite": "torchattacks", "skipped": "torchattacks is not installed (the bench extra)"}), flush=True)
        torchattacks = None
    if torchattacks is not None and "torchattacks" not in args.skip:
        norm = {"linf": "Linf", "l2": "L2"}[args.norm]

        class MarginAPGD(torchattacks.APGD):
            """torchattacks' APGD with the margin loss (max_{i != y} z_i - z_y) where its DLR would index a third logit."""

            def dlr_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                own = x.gather(1, y[:, None]).squeeze(1)
                other = x.scatter(1, y[:, None], float("-inf")).amax(1)
                return other - own

        common = {"norm": norm, "eps": args.eps, "steps": args.steps, "n_restarts": 1, "seed": args.seed, "rho": 0.75}
        theirs = [
            ("torchattacks APGD(ce)", torchattacks.APGD(model, loss="ce", **common)),
            ("torchattacks APGD(margin)", MarginAPGD(model, loss="dlr", **common)),
            ("torchattacks Square", torchattacks.Square(model, norm=norm, eps=args.eps, n_queries=args.queries, p_init=args.p_init,
                                                         seed=args.seed, loss="margin")),
        ]  # fmt: skip
        results.append(_chain("torchattacks (all images)", [(n, lambda a, b, t=t: t(a, b)) for n, t in theirs], model, x, y,
                              args.batch_size, survivors_only=False))  # fmt: skip
    for r in results:
        print(json.dumps(r), flush=True)
    if len(results) == 2:
        ours_r, ref = results
        print(json.dumps({
            "ratio": "torchattacks seconds / dfrobust seconds (whole suite)",
            "speedup": round(ref["seconds"] / max(ours_r["seconds"], 1e-9), 2),
            "robust_accuracy_diff": round(ours_r["robust_accuracy"] - ref["robust_accuracy"], 4),  # <= 0: the chain is as strong
        }), flush=True)  # fmt: skip
    print(f"\n{'suite':<28} {'robust':>8} {'seconds':>9}", file=sys.stderr)
    for r in results:
        print(f"{r['suite']:<28} {r['robust_accuracy']:>8.1%} {r['seconds']:>9.2f}", file=sys.stderr)
    return 0
