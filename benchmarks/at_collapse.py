"""Does adversarial fine-tuning keep a detector? The old recipe vs the anti-collapse one, on the same model and images.

Fine-tunes a trained plain detector (default: a quick run's ResNet-18) on a seeded subset of its
training split with the library's own training step (:func:`dfrobust.train.steps.train_step`,
so the recipe is exactly the one ``dfrobust train --adversarial`` runs), once per setup:

* ``before``: the recipe as it was: full radius from the first step, adversarial loss alone
  (``adv_ramp_epochs=0, adv_clean_weight=0``);
* ``after``: the defaults (radius ramp over the first epoch, clean loss weight 0.5);
* ``ramp-only``, ``mix-only``: one guard each (``--setups`` picks; default: before and after);

then evaluates the last epoch (no model selection, so the recipe alone is compared) on the
whole test split: accuracy, AUROC, per-class recall, the collapse diagnosis
(:func:`dfrobust.evaluate.collapse.collapsed`) and FGSM accuracy at the training radius on the
first ``--attack-images`` test images. One JSON line per setup::

    .venv/bin/python benchmarks/at_collapse.py --run runs/quick --images 300 --epochs 2 --method fast --eps 0.02
    .venv/bin/python benchmarks/at_collapse.py --run runs/quick --method pgd --eps 0.0314 --optimizer sgd
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from dfrobust.attacks.base import make_attack
from dfrobust.data.augment import Augment
from dfrobust.data.dataset import load_split
from dfrobust.evaluate.collapse import collapsed
from dfrobust.evaluate.evaluation import evaluate_detector
from dfrobust.models.checkpoint import load_detector
from dfrobust.train.config import TrainConfig
from dfrobust.train.steps import build_augment, epoch_generator, make_optimizer, train_step

SETUPS = {
    "before": {"adv_ramp_epochs": 0.0, "adv_clean_weight": 0.0},
    "after": {},
    "ramp-only": {"adv_clean_weight": 0.0},  # ablations: each guard alone
    "mix-only": {"adv_ramp_epochs": 0.0},
}


def fine_tune(model: torch.nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, augment: Augment) -> None:
    """``cfg.epochs`` epochs of ``train_step`` over ``x`` in seeded batches (as ``train_one_epoch``, without DDP)."""
    optimizer = make_optimizer(model, cfg)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        gen = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(x), generator=gen)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        batches = [b for b in batches if len(b) >= 2]
        for step, idx in enumerate(batches):
            train_step(model, optimizer, augment(x[idx], gen), y[idx], cfg, gen, epochs_done=epoch - 1 + step / len(batches))


def main() -> None:
    """Fine-tune once per setup and print the test metrics."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/quick", help="a run folder with data/ and models/resnet18.safetensors")
    ap.add_argument("--model", help="the plain detector (default: RUN/models/resnet18.safetensors)")
    ap.add_argument("--images", type=int, default=300, help="training images (a seeded, both-class subset)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--method", default="fast", choices=["fast", "pgd", "trades"])
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--attack-images", type=int, default=100)
    ap.add_argument("--setups", nargs="+", default=["before", "after"], choices=list(SETUPS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = Path(args.run)
    data = run / "data"
    train = load_split(data, "train", limit=args.images, seed=args.seed)
    test = load_split(data, "test")
    x, y = train.images(), train.y
    base = TrainConfig(arch="resnet18", optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=16,
                       adversarial=args.method, adv_eps=args.eps, seed=args.seed, device="cpu")  # fmt: skip
    for name in args.setups:
        cfg = replace(base, **SETUPS[name])
        model, _ = load_detector(args.model or run / "models" / "resnet18.safetensors")
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        fine_tune(model, cfg, x, y, build_augment(cfg, x.shape[-1]))
        seconds = time.perf_counter() - start
        model.eval()
        m = evaluate_detector(model, test, 64, torch.device("cpu"), gradients=False)
        xa, ya = test.images()[: args.attack_images], test.y[: args.attack_images]
        fgsm = make_attack("fgsm", eps=args.eps)(model, xa, ya)
        diagnosis = collapsed(m)
        print(json.dumps({
            "setup": name, "method": args.method, "eps": args.eps, "images": len(x), "epochs": args.epochs,
            "ramp_epochs": cfg.adv_ramp_epochs, "clean_weight": cfg.adv_clean_weight,
            "test_n": m["n"], "test_accuracy": m["accuracy"], "auroc": m["auroc"],
            "real_recall": m["real_recall"], "fake_recall": m["fake_recall"],
            "fgsm_accuracy": 1 - fgsm.success.float().mean().item(), "fgsm_n": len(ya),
            "collapsed": diagnosis.reason or False, "seconds": round(seconds, 1),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
