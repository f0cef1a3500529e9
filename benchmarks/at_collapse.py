"""Does adversarial fine-tuning keep a detector? Recipes, model selection and a calibrated threshold, on the same images.

Fine-tunes a trained plain detector (default: a quick run's ResNet-18) on a seeded subset of its
training split with the library's own training step (:func:`dfrobust.train.steps.train_step`,
so the recipe is exactly the one ``dfrobust train --adversarial`` runs), once per setup:

* ``before``: the recipe as it was: full radius from the first step, adversarial loss alone
  (``adv_ramp_epochs=0, adv_clean_weight=0``);
* ``after``: the defaults (radius ramp over the first epoch, clean loss weight 0.5);
* ``ramp-only``, ``mix-only``: one guard each (``--setups`` picks; default: before and after);

``--ramp-epochs`` and ``--clean-weight`` override a setup's values. The validation split is the
library's (:func:`dfrobust.train.loop.carve_validation` of the whole training split, so the one
the plain detector was selected on); the fine-tune draws ``--images`` of the rest.

After every epoch (and for the start model, epoch 0) it records the validation metrics, the
library's held-out robustness check (PGD, APGD-CE and FGSM at the training radius on the
validation split's fixed batch) and the test metrics, each at the 0.5 threshold and at the threshold
calibrated on the validation split (:mod:`dfrobust.train.calibration`, folded into the head). Then,
per model selection (``--selections``) and threshold (``--thresholds``), the epoch it keeps:

* ``last``: the last epoch;
* ``robust``: the library's rule without ``adv_max_clean_drop``: not collapsed, then the best held-out
  robust accuracy (PGD, APGD-CE and FGSM all fail), then validation accuracy, then loss;
* ``bounded``: among epochs whose validation accuracy is at most ``--max-clean-drop`` below the
  start model's, the best held-out robust accuracy (then validation accuracy); none: the best
  validation accuracy;

and its whole-test accuracy, AUROC, per-class recall, collapse diagnosis, and PGD (``--pgd-steps``)
and APGD-CE (``--apgd-steps``) accuracy at the training radius on the first ``--attack-images``
test fakes, beside the start model on the same fakes. JSON lines (``kind``: epoch, selection)::

    .venv/bin/python benchmarks/at_collapse.py --run runs/quick --images 300 --epochs 2 --method fast --eps 0.02
    .venv/bin/python benchmarks/at_collapse.py --run RUN --method pgd --eps 0.0314 --optimizer sgd --setups after
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dfrobust.attacks.base import make_attack
from dfrobust.data.augment import Augment
from dfrobust.data.dataset import ImageSet, load_split
from dfrobust.evaluate.collapse import collapsed
from dfrobust.evaluate.evaluation import metrics_from_logits
from dfrobust.models.checkpoint import load_detector
from dfrobust.train.adversarial import check_batch, recipe_for, robustness_check
from dfrobust.train.calibration import margin_threshold, p_real_threshold, shifted_head
from dfrobust.train.config import TrainConfig
from dfrobust.train.loop import carve_validation
from dfrobust.train.selection import epoch_score
from dfrobust.train.steps import build_augment, epoch_generator, make_optimizer, train_step

SETUPS = {
    "before": {"adv_ramp_epochs": 0.0, "adv_clean_weight": 0.0},
    "after": {},
    "ramp-only": {"adv_clean_weight": 0.0},  # ablations: each guard alone
    "mix-only": {"adv_ramp_epochs": 0.0},
}
KEYS = ("accuracy", "auroc", "real_recall", "fake_recall", "loss")


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Eval-mode logits of ``x`` in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def _metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    m = metrics_from_logits(logits, y)
    return {k: m[k] for k in KEYS}


def epoch_record(model: torch.nn.Module, val: ImageSet, check: tuple[torch.Tensor, torch.Tensor], test: ImageSet,
                 cfg: TrainConfig) -> dict[str, Any]:  # fmt: skip
    """Validation, held-out check and test metrics of ``model`` at threshold 0.5 (``raw``) and calibrated on val (``cal``)."""
    recipe = recipe_for(cfg, val.image_size)
    val_logits = logits_of(model, val.images())
    tau = margin_threshold(val_logits, val.y)
    out: dict[str, Any] = {"tau": tau, "p_real_threshold": p_real_threshold(tau)}
    for name, shift in (("raw", 0.0), ("cal", tau)):
        if name == "cal" and tau == 0:  # nothing moved: the same model
            out["cal"] = out["raw"]
            continue
        with shifted_head(model, shift):
            out[name] = {
                "val": _metrics(logits_of(model, val.images()), val.y),
                "check": robustness_check(model, *check, recipe, cfg.seed),
                "test": _metrics(logits_of(model, test.images()), test.y),
            }
            out[name]["collapsed"] = collapsed(out[name]["val"]).reason or False
    return out


def fine_tune(model: torch.nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, augment: Augment,
              after_epoch: Any = None) -> None:  # fmt: skip
    """``cfg.epochs`` epochs of ``train_step`` over ``x`` in seeded batches (as ``train_one_epoch``, without DDP)."""
    optimizer = make_optimizer(model, cfg)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        gen = epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(x), generator=gen)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        batches = [b for b in batches if len(b) >= 2]
        for step, idx in enumerate(batches):
            train_step(model, optimizer, augment(x[idx], gen), y[idx], cfg, gen, epochs_done=epoch - 1 + step / len(batches))
        if after_epoch is not None:
            after_epoch(epoch, model)


def select(records: list[dict[str, Any]], rule: str, thr: str, max_drop: float) -> int:
    """The epoch (>= 1) that ``rule`` keeps, reading the ``thr`` (``raw``/``cal``) metrics of each epoch (0: the start).

    ``robust`` and ``bounded`` rank by the library's own :func:`~dfrobust.train.selection.epoch_score`.
    """
    rows = [(r["epoch"], r[thr]) for r in records if r["epoch"] >= 1]
    if rule == "last":
        return rows[-1][0]
    floor = None if rule == "robust" else records[0][thr]["val"]["accuracy"] - max_drop
    return max(rows, key=lambda e: epoch_score(e[1]["val"], e[1]["check"], floor))[0]


def attack_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, pgd_steps: int, apgd_steps: int,
                    seed: int) -> dict[str, float]:  # fmt: skip
    """Accuracy under PGD (step eps/4, random start) and APGD-CE at ``eps`` on ``(x, y)``."""
    model.eval()
    pgd = make_attack("pgd", eps=eps, norm="linf", steps=pgd_steps, step_size=eps / 4, random_start=True, seed=seed)
    apgd = make_attack("apgd", eps=eps, norm="linf", steps=apgd_steps, seed=seed)
    clean = (logits_of(model, x).argmax(1) == y).float().mean().item()
    return {
        "clean_accuracy": clean,
        "pgd_accuracy": 1 - pgd(model, x, y).success.float().mean().item(),
        "apgd_accuracy": 1 - apgd(model, x, y).success.float().mean().item(),
    }


def main() -> None:
    """Fine-tune once per setup, record every epoch, and print the test metrics of each selection."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/quick", help="a run folder with data/ and models/resnet18.safetensors")
    ap.add_argument("--model", help="the plain detector (default: RUN/models/resnet18.safetensors)")
    ap.add_argument("--images", type=int, default=300, help="training images (a seeded subset of the split left after validation)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--method", default="fast", choices=["fast", "pgd", "trades"])
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ramp-epochs", type=float, help="override the setup's adv_ramp_epochs")
    ap.add_argument("--clean-weight", type=float, help="override the setup's adv_clean_weight (pgd, fast)")
    ap.add_argument("--trades-beta", type=float, default=6.0)
    ap.add_argument("--val-fraction", type=float, default=0.1, help="the library's validation split (as the plain model's)")
    ap.add_argument("--selections", nargs="+", default=["last", "robust", "bounded"], choices=["last", "robust", "bounded"])
    ap.add_argument("--thresholds", nargs="+", default=["raw", "cal"], choices=["raw", "cal"], help="raw: 0.5; cal: calibrated on val")
    ap.add_argument("--max-clean-drop", type=float, default=0.10, help="bounded selection: validation accuracy loss allowed")
    ap.add_argument("--attack-images", type=int, default=100, help="test fakes attacked (the first ones)")
    ap.add_argument("--pgd-steps", type=int, default=10)
    ap.add_argument("--apgd-steps", type=int, default=20)
    ap.add_argument("--setups", nargs="+", default=["before", "after"], choices=list(SETUPS))
    ap.add_argument("--no-start-attack", action="store_true", help="skip attacking the start model (measured by an earlier run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = ap.parse_args()
    run = Path(args.run)
    data = run / "data"
    model_path = args.model or run / "models" / "resnet18.safetensors"
    fit, val = carve_validation(load_split(data, "train"), args.val_fraction, args.seed)
    if args.images < len(fit):
        fit = fit.subset(torch.randperm(len(fit), generator=torch.Generator().manual_seed(args.seed))[: args.images].sort().values)
    test = load_split(data, "test")
    fakes = torch.nonzero(test.y == 0).flatten()[: args.attack_images]
    xa, ya = test.images(fakes), test.y[fakes]
    check_idx = check_batch(len(val), args.seed)
    check = (val.images(check_idx), val.y[check_idx])
    x, y = fit.images(), fit.y

    def emit(row: dict[str, Any]) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if args.out is not None:
            with args.out.open("a") as fh:
                fh.write(line + "\n")

    base = TrainConfig(arch="resnet18", optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=16,
                       adversarial=args.method, adv_eps=args.eps, seed=args.seed, device="cpu")  # fmt: skip
    if args.method == "trades":
        base = replace(base, trades_beta=args.trades_beta)
    plain, _ = load_detector(model_path)
    start_attack: dict[str, dict[str, float]] = {}
    by_shift: dict[float, dict[str, float]] = {}
    for thr in args.thresholds if not args.no_start_attack else []:
        tau = margin_threshold(logits_of(plain, val.images()), val.y) if thr == "cal" else 0.0
        if tau not in by_shift:
            with shifted_head(plain, tau):
                by_shift[tau] = attack_accuracy(plain, xa, ya, args.eps, args.pgd_steps, args.apgd_steps, args.seed)
        start_attack[thr] = by_shift[tau]
        emit({"kind": "start", "threshold": thr, "tau": tau, "attack_n": len(ya), **start_attack[thr]})
    for name in args.setups:
        overrides = dict(SETUPS[name])
        if args.ramp_epochs is not None:
            overrides["adv_ramp_epochs"] = args.ramp_epochs
        if args.clean_weight is not None and args.method != "trades":
            overrides["adv_clean_weight"] = args.clean_weight
        if args.method == "trades":
            overrides.pop("adv_clean_weight", None)
        cfg = replace(base, **overrides)
        model, _ = load_detector(model_path)
        torch.manual_seed(args.seed)
        head = {"setup": name, "method": args.method, "eps": args.eps, "images": len(x), "epochs": args.epochs, "lr": cfg.lr,
                "optimizer": cfg.optimizer, "ramp_epochs": cfg.adv_ramp_epochs, "clean_weight": cfg.adv_clean_weight}  # fmt: skip
        records: list[dict[str, Any]] = []
        states: dict[int, dict[str, torch.Tensor]] = {}

        def after(epoch: int, m: torch.nn.Module) -> None:
            rec = {"epoch": epoch, **epoch_record(m, val, check, test, cfg)}
            records.append(rec)
            states[epoch] = {k: v.detach().clone() for k, v in m.state_dict().items()}
            emit({"kind": "epoch", **head, **rec})  # called within this iteration

        after(0, model)
        fine_tune(model, cfg, x, y, build_augment(cfg, x.shape[-1]), after)
        attacked: dict[tuple[int, float], dict[str, float]] = {}  # by (epoch, threshold shift): each model attacked once
        for rule in args.selections:
            for thr in args.thresholds:
                epoch = select(records, rule, thr, args.max_clean_drop)
                rec = next(r for r in records if r["epoch"] == epoch)
                shift = rec["tau"] if thr == "cal" else 0.0
                if (epoch, shift) not in attacked:
                    model.load_state_dict(states[epoch])
                    with shifted_head(model, shift):
                        attacked[epoch, shift] = attack_accuracy(model, xa, ya, args.eps, args.pgd_steps, args.apgd_steps, args.seed)
                test_m = rec[thr]["test"]
                emit({
                    "kind": "selection", **head, "selection": rule, "threshold": thr, "epoch": epoch, "tau": shift,
                    "val_accuracy": rec[thr]["val"]["accuracy"], "heldout_pgd": rec[thr]["check"]["pgd_accuracy"],
                    "test_n": len(test.y), **{f"test_{k}": v for k, v in test_m.items()},
                    "collapsed": collapsed(test_m).reason or False, "attack_n": len(ya), **attacked[epoch, shift],
                    "start": start_attack.get(thr),
                })  # fmt: skip


if __name__ == "__main__":
    main()
