"""Benchmark: dfrobust's APGD and Square against torchattacks' (the ``bench`` extra), same model, same images, one run.

Pairs, each at the same budget:

* APGD-CE: dfrobust ``apgd`` vs ``torchattacks.APGD`` (loss ce, same norm, eps, steps, 1 restart, rho 0.75);
* Square: dfrobust ``square`` vs ``torchattacks.Square`` (margin loss, same norm, eps, queries, p_init).

Printed per method: success rate (the model misclassifies the returned image), median Linf and
L2 perturbation of the successes, seconds per image, and for Square the mean queries per image
(dfrobust: its per-image counter, the clean query included; torchattacks: forward rows seen by
the model divided by the images, its clean-prediction pass included). Everything goes to
stdout as JSON lines; the table goes to stderr. The target (issue 14): equal or better success
at equal budget, and not slower.

Run::

    .venv/bin/python benchmarks/bench_apgd_square.py --smoke
    .venv/bin/python benchmarks/bench_apgd_square.py                      # the tests' toy data and tiny detector
    .venv/bin/python benchmarks/bench_apgd_square.py --model models/resnet18.safetensors --data data/synth \\
        --n-images 64 --eps 0.0157 --device cuda

``--smoke`` attacks 8 random 16-px images on an untrained ``tiny`` detector with 10 APGD steps,
50 queries and eps 0.1: it shows the script works, its figures mean nothing.

``--suite`` (issue 26, goal 5) measures robust accuracy the way the leaderboard computes it instead:
dfrobust's chain (APGD-CE on every image, then APGD with the margin loss and Square on the
survivors only, as the presets' ``survivors_of``) against torchattacks' APGD (CE), APGD (margin
loss: its DLR needs 3 classes, so its ``dlr_loss`` is replaced by the margin) and Square run one after
another on all images. An image is fooled when the model misclassifies its 8-bit rounding (the
project's success definition), on both sides. Printed: seconds and images attacked per method,
robust accuracy per image after each step of the chain, and the ratio of total seconds::

    .venv/bin/python benchmarks/bench_apgd_square.py --suite --smoke
    .venv/bin/python benchmarks/bench_apgd_square.py --suite --n-images 64 --queries 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


class QueryCounter(nn.Module):
    """Pass-through wrapper counting the images (rows) the model is queried on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def toy_setup(folder: Path, size: int, seed: int, n_images: int) -> tuple[Path, Path]:
    """The tests' toy dataset and a trained ``tiny`` detector, written under ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_toy_dataset, train_tiny  # the test fixtures' builders, reused

    from dfrobust.models.checkpoint import save_detector

    data = make_toy_dataset(folder / "data", n_per_class_split=max(24, n_images), size=size, seed=seed)
    model_path = save_detector(train_tiny(data, seed=seed), folder / "tiny.safetensors", {"input_size": [size, size]})
    return data, model_path


def smoke_setup(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict]:
    """An untrained ``tiny`` detector and 8 random 16-px images labelled with its own predictions."""
    from dfrobust.models.detectors import build_detector

    torch.manual_seed(seed)
    model = build_detector("tiny").eval()
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, {"model": "untrained tiny (smoke)", "arch": "tiny"}


def median(values: torch.Tensor) -> float | None:
    return round(statistics.median(values.tolist()), 5) if len(values) else None


def measure(
    name: str, pair: str, run: Callable[[], tuple[torch.Tensor, float | None]], model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict:
    """Time ``run`` (adversarial images and mean queries per image, or None) and score its output on ``model``."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    x_adv, queries = run()
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    x_adv = x_adv.detach().float().clamp(0, 1)
    with torch.no_grad():
        success = (model(x_adv).argmax(1) != y).cpu()
    delta = (x_adv - x).flatten(1).cpu()
    linf, l2 = delta.abs().amax(1), delta.norm(dim=1)
    return {
        "pair": pair,
        "method": name,
        "n_images": len(x),
        "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / len(x), 5),
        "success_rate": round(success.float().mean().item(), 4),
        "median_linf_success": median(linf[success]),
        "median_l2_success": median(l2[success]),
        "max_linf": round(linf.max().item(), 6),
        "max_l2": round(l2.max().item(), 6),
        "mean_queries": None if queries is None else round(queries, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="detector checkpoint (default: a tiny model on toy data)")
    parser.add_argument("--data", type=Path, help="dataset folder whose fake test images are attacked")
    parser.add_argument("--size", type=int, default=32, help="toy image size when no --data (default 32)")
    parser.add_argument("--n-images", type=int, default=64, help="images attacked (default 64)")
    parser.add_argument("--norm", choices=["linf", "l2"], default="linf")
    parser.add_argument("--eps", type=float, help="radius for both pairs (default 0.02, the paper's FGSM eps; 0.1 with --smoke)")
    parser.add_argument("--steps", type=int, default=100, help="APGD iterations (default 100)")
    parser.add_argument("--queries", type=int, default=5000, help="Square queries per image (default 5000)")
    parser.add_argument("--p-init", type=float, default=0.8)
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch for every method")
    parser.add_argument("--suite", action="store_true", help="robust accuracy of the chain (APGD-CE, APGD-margin, Square on survivors)")
    parser.add_argument("--smoke", action="store_true", help="8 random 16-px images, untrained tiny model, 10 steps, 50 queries, eps 0.1")
    parser.add_argument("--skip", nargs="*", default=[], choices=["apgd", "square", "torchattacks"], help="what to leave out")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dfrobust.attacks.base import make_attack
    from dfrobust.data.dataset import load_split
    from dfrobust.models.checkpoint import load_detector

    if args.eps is None:
        args.eps = 0.1 if args.smoke else 0.02
    if args.smoke:
        args.steps, args.queries = min(args.steps, 10), min(args.queries, 50)
        model, x, y, meta = smoke_setup(args.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            if args.model is None or args.data is None:
                args.data, args.model = toy_setup(Path(tmp), args.size, args.seed, args.n_images)
            model, meta = load_detector(args.model)
            images = load_split(args.data, "test", ["fake"], limit=args.n_images, seed=args.seed)
            x, y = images.images(), images.y
        meta = {"model": str(args.model), "arch": meta["arch"]}
    device = torch.device(args.device)
    model, x, y = model.to(device).eval(), x.to(device), y.to(device)
    for param in model.parameters():  # input gradients only, for every method alike
        param.requires_grad_(False)
    # eval(): a new Module starts in train mode, and torchattacks restores the mode it found afterwards,
    # which put the detector's BatchNorm in train mode for every later measurement
    counter = QueryCounter(model).eval()
    settings = {
        **meta, "image_size": list(x.shape[2:]), "n_images": len(x), "norm": args.norm, "eps": args.eps,
        "steps": args.steps, "queries": args.queries, "p_init": args.p_init, "batch_size": args.batch_size,
        "device": str(device), "threads": args.threads, "torch": torch.__version__, "smoke": args.smoke,
    }  # fmt: skip
    print(json.dumps({"settings": settings}), flush=True)
    if args.suite:
        from bench_suite import run_suite  # beside this script

        return run_suite(model, x, y, args)

    def batched(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], torch.Tensor]:
        bs = args.batch_size
        return lambda: torch.cat([attack(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])

    def ours(name: str, **params: object) -> Callable[[], tuple[torch.Tensor, float | None]]:
        attack = make_attack(name, norm=args.norm, eps=args.eps, seed=args.seed, **params)
        queries: list[torch.Tensor] = []

        def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            result = attack(model, a, b)
            if "queries" in result.extras:
                queries.append(result.extras["queries"])
            return result.x_adv

        def run() -> tuple[torch.Tensor, float | None]:
            x_adv = batched(one)()
            return x_adv, (torch.cat(queries).float().mean().item() if queries else None)

        return run

    def reference(make: Callable[[nn.Module], Callable], count: bool) -> Callable[[], tuple[torch.Tensor, float | None]]:
        def run() -> tuple[torch.Tensor, float | None]:
            counter.rows = 0
            attack = make(counter)
            x_adv = batched(lambda a, b: attack(a, b))()
            return x_adv, (counter.rows / len(x) if count else None)

        return run

    ta_norm = {"linf": "Linf", "l2": "L2"}[args.norm]
    methods: list[tuple[str, str, Callable[[], tuple[torch.Tensor, float | None]]]] = []
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
        if "torchattacks" not in args.skip:
            print(json.dumps({"method": "torchattacks", "skipped": "torchattacks is not installed (the bench extra)"}), flush=True)
    use_ta = torchattacks is not None and "torchattacks" not in args.skip
    if "apgd" not in args.skip:
        methods.append(("apgd", "dfrobust apgd", ours("apgd", steps=args.steps, restarts=1, loss="ce")))
        if use_ta:
            make = lambda m: torchattacks.APGD(  # noqa: E731
                m, norm=ta_norm, eps=args.eps, steps=args.steps, n_restarts=1, seed=args.seed, loss="ce", rho=0.75
            )
            methods.append(("apgd", "torchattacks APGD", reference(make, count=False)))
    if "square" not in args.skip:
        methods.append(("square", "dfrobust square", ours("square", queries=args.queries, p_init=args.p_init)))
        if use_ta:
            make = lambda m: torchattacks.Square(  # noqa: E731
                m, norm=ta_norm, eps=args.eps, n_queries=args.queries, p_init=args.p_init, seed=args.seed, loss="margin"
            )
            methods.append(("square", "torchattacks Square", reference(make, count=True)))

    results = []
    for pair, name, run in methods:
        res = measure(name, pair, run, model, x, y)
        results.append(res)
        print(json.dumps(res), flush=True)

    print(f"\n{'method':<22} {'success':>8} {'med Linf':>9} {'med L2':>8} {'s/image':>9} {'queries':>8}", file=sys.stderr)
    for r in results:
        cells = [r["median_linf_success"], r["median_l2_success"]]
        linf, l2 = ("-" if v is None else f"{v:.4f}" for v in cells)
        q = "-" if r["mean_queries"] is None else f"{r['mean_queries']:.1f}"
        print(f"{r['method']:<22} {r['success_rate']:>8.1%} {linf:>9} {l2:>8} {r['seconds_per_image']:>9.4f} {q:>8}", file=sys.stderr)

    for pair in ("apgd", "square"):
        mine = next((r for r in results if r["pair"] == pair and r["method"].startswith("dfrobust")), None)
        ref = next((r for r in results if r["pair"] == pair and r["method"].startswith("torchattacks")), None)
        if mine is None or ref is None:
            continue
        ratio = {
            "ratio": f"dfrobust vs torchattacks ({pair})",
            "success_diff": round(mine["success_rate"] - ref["success_rate"], 4),
            "speedup": round(ref["seconds"] / max(mine["seconds"], 1e-9), 2),
            "target_met": bool(mine["success_rate"] >= ref["success_rate"] and mine["seconds"] <= ref["seconds"]),
        }
        print(json.dumps(ratio), flush=True)
    if args.smoke:
        print("\n(smoke run: an untrained model on random images; the figures mean nothing)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
