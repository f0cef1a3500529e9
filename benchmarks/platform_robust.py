"""Does a transformation-robust attack survive the platform better than the plain one? (issue 28, done-when)

Plain vs. robust (EOT over ``--robust-to``) versions of one attack at the same budget, on the
same images of one detector, scored losslessly, after the chain the robust attack saw and after
a held-out chain (:func:`dfrobust.attacks.robust.platform_experiment`). The claim to check: under
``jpeg:50-95`` the robust attack keeps a higher success rate after a JPEG round trip.

Small, self-contained (the development machine): synthetic faces at 32 px and a ResNet-18
trained here for 150 Adam steps::

    PYTHONPATH=src python benchmarks/platform_robust.py --out /tmp/platform-small

On the quick data with the quick preset's detectors (run later on an idle machine)::

    PYTHONPATH=src python benchmarks/platform_robust.py --data runs/quick/data \\
        --model runs/quick/models/resnet18.safetensors --images 200 --attack fgsm --eps 0.02 --out runs/platform

Writes ``OUT/summary.json`` and ``OUT/platform.csv`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dfrobust.attacks.robust import platform_experiment
from dfrobust.data.dataset import load_split
from dfrobust.data.synthetic import generate_synthetic
from dfrobust.models.checkpoint import save_detector
from dfrobust.models.detectors import build_detector
from dfrobust.models.loading import load_model_arg


def train_small(data: Path, arch: str, steps: int, seed: int) -> torch.nn.Module:
    """Detector ``arch`` fitted to the train split with Adam (lr 1e-3, batches of 64; the quick preset's optimiser)."""
    torch.manual_seed(seed)
    train = load_split(data, "train")
    model = build_detector(arch).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = train.images(), train.y
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"  train step {step}: loss {loss.item():.3f}", file=sys.stderr)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (summary.json, platform.csv)")
    p.add_argument("--data", type=Path, help="dataset folder (default: synthesise --n faces at --size px into OUT/data)")
    p.add_argument("--model", type=Path, help="detector checkpoint or card (default: train the tiny detector into OUT)")
    p.add_argument("--arch", default="resnet18", help="detector trained when --model is not given (default: %(default)s)")
    p.add_argument("--n", type=int, default=1200, help="synthetic faces when --data is not given (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="their side in pixels (default: %(default)s)")
    p.add_argument("--steps", type=int, default=150, help="training steps of that detector (default: %(default)s)")
    p.add_argument("--images", type=int, default=64, help="fake test images attacked (default: %(default)s)")
    p.add_argument("--attack", default="fgsm", help="attack (default: %(default)s)")
    p.add_argument("--eps", type=float, default=0.02, help="Linf budget (default: %(default)s, the paper's FGSM)")
    p.add_argument("--steps-attack", type=int, default=10, help="steps of an iterative attack (pgd, apgd) (default: %(default)s)")
    p.add_argument("--robust-to", default="jpeg:50-95", help="chain of the robust attack (default: %(default)s)")
    p.add_argument("--heldout", default="jpeg:30-45,resize:0.75-0.9", help="held-out chain (default: %(default)s)")
    p.add_argument("--eot", type=int, default=8, help="chain draws per gradient (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = args.data or generate_synthetic(args.out / "data", n=args.n, size=args.size, seed=args.seed)
    if args.model is None:
        model = train_small(data, args.arch, args.steps, args.seed)
        save_detector(model, args.out / f"{args.arch}.safetensors", {"input_size": [args.size] * 2, "seed": args.seed,
                                                             "training": {"note": "benchmarks/platform_robust.py"}})  # fmt: skip
    else:
        model, _ = load_model_arg(args.model, "cpu")
    test = load_split(data, "test")
    fakes = [i for i in range(len(test)) if int(test.y[i]) == 0][: args.images]
    x, y = test.images()[fakes], test.y[fakes]
    names = [test.paths[i] for i in fakes]
    params: dict = {"eps": args.eps}
    if args.attack in ("pgd", "apgd"):
        params["steps"] = args.steps_attack
    s = platform_experiment(model, x, y, names, args.attack, params, args.robust_to, args.heldout, args.eot, args.seed, out_dir=args.out)
    print(f"{args.attack} eps {args.eps} on {s['n']} fake images; robust to {s['robust_to']} (EOT {args.eot}); held out {s['heldout']}")
    print(f"clean accuracy: lossless {s['clean_accuracy']['lossless']['rate']:.1%}, after the chain "
          f"{s['clean_accuracy']['chain']['rate']:.1%}, held out {s['clean_accuracy']['heldout']['rate']:.1%}")  # fmt: skip
    print(f"{'success':<8} {'lossless':>22} {'after chain':>22} {'held out':>22}")
    for variant, rates in s["success"].items():
        cells = [f"{r['rate']:.1%} [{r['ci'][0]:.0%},{r['ci'][1]:.0%}] n={r['n']}" for r in rates.values()]
        print(f"{variant:<8} " + " ".join(f"{c:>22}" for c in cells))
    gain = s["success"]["robust"]["chain"]["rate"] - s["success"]["plain"]["chain"]["rate"]
    print(f"robust - plain after the chain: {gain:+.1%}  (written: {args.out}/summary.json, platform.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
