"""`dfrobust train`: train a detector (paper defaults), optionally Lipschitz-regularised or blur-augmented."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg, add_seed_arg

EXAMPLES = [
    "dfrobust train --data data/synth --arch resnet18 --out models/resnet18.safetensors",
    "dfrobust train --data data/synth --arch vgg16 --out models/vgg16.safetensors",
    "dfrobust train --data data/small --arch vgg16_bn_gap --optimizer adam --lr 1e-4 --out models/vgg16.safetensors  # 32 px",
    "dfrobust train --data data/synth --arch resnet18 --lipschitz 50 --out models/resnet18-lip50.safetensors",
    "dfrobust train --data data/synth --resume-from models/resnet18.safetensors --epochs 10 \\\n"
    "      --blur-fraction 0.4 --blur-sigma 3 5 --out models/resnet18-blur.safetensors",
]

DESCRIPTION = """\
Train a real/fake detector on a dataset folder and save it as FILE.safetensors plus FILE.json
(architecture, input size, full config, data hash, validation and test metrics).

Defaults are the paper's: SGD lr 1e-3, momentum 0.9, batch 16, 5 epochs, random init, pixels in
[0, 1], horizontal flips. The epoch kept is the one with the best accuracy on a validation split
carved from the training split (--val-fraction); the test split is only evaluated. An interrupted
run resumes from its last finished epoch when the same command is run again.
"""


def register(subparsers: Any) -> None:
    """Add the `train` subcommand."""
    p = add_command(subparsers, "train", "Train a detector (Table I models)", EXAMPLES, DESCRIPTION)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (from `dfrobust data ...`)")
    p.add_argument("--out", required=True, metavar="FILE", help="output FILE.safetensors (sidecar FILE.json beside it)")
    p.add_argument("--arch", default=None, help="vgg16, vgg16_bn, vgg16_bn_gap (global pooling before the classifier: for small images), resnet18, resnet50, efficientnet_b0, mobilenet_v3_small, any torchvision classifier, tiny (default: resnet18, or that of --resume-from)")
    p.add_argument("--epochs", type=int, default=5, help="epochs to train; with --resume-from, epochs added (default: 5)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd: SGD with --momentum, as the paper; adam: Adam, which trains small images in fewer epochs (default: sgd)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch size (default: 16)")
    p.add_argument("--eval-batch-size", type=int, default=64, help="batch size for validation and test (default: 64)")
    p.add_argument("--lipschitz", type=float, default=0.0, metavar="LAMBDA", help="Lipschitz regularisation strength, eq. (7) of the paper; the paper used 5, 50, 500, 5000 (default: 0 = off)")
    p.add_argument("--lipschitz-estimator", choices=["exact", "rademacher"], default="rademacher", help="rademacher: one backward pass with random signs, an unbiased estimate of eq. (7), ~2.7x a plain step; exact: one backward pass per logit, ~4x (default: rademacher)")
    p.add_argument("--lipschitz-batchnorm", choices=["batch", "eval"], default="batch", help="batch: penalty on the training pass, BatchNorm on batch statistics (the authors'); eval: on a second pass with running statistics, each image's own gradient (default: batch)")
    p.add_argument("--blur-fraction", type=float, default=0.0, metavar="F", help="fraction of training images Gaussian-blurred, e.g. 0.4 for the paper's blur model (default: 0)")
    p.add_argument("--blur-sigma", type=float, nargs=2, default=(3.0, 5.0), metavar=("LO", "HI"), help="blur sigma ~ U[LO, HI] in pixels of a 300-px-wide image (the paper's width); scaled by width/300 for the dataset's width (default: 3 5)")
    p.add_argument("--no-hflip", dest="hflip", action="store_false", help="turn off random horizontal flips")
    p.add_argument("--resume-from", default=None, metavar="FILE", help="continue training this dfrobust model (e.g. the blur model: --epochs 10 more)")
    p.add_argument("--init", default=None, metavar="FILE", help="start from a local torchvision state dict (.safetensors or .pth, e.g. ImageNet weights); nothing is downloaded (default: random init)")
    p.add_argument("--normalization", choices=["none", "imagenet"], default=None, help="input normalisation inside the model (default: none, as the paper)")
    p.add_argument("--activation", choices=["relu", "halfhuber"], default=None, help="halfhuber: the authors' smooth ReLU for double backprop (default: relu)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the training split held out for model selection; 0 keeps the last epoch (default: 0.1)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--force", action="store_true", help="retrain even if FILE already holds a model of these settings")
    add_seed_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run)
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it holds a model trained with other settings or data")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`TrainConfig` of the command line (architecture etc. from --resume-from when not given)."""
    from dfrobust.errors import DfrobustError
    from dfrobust.models.checkpoint import read_sidecar
    from dfrobust.train.config import TrainConfig

    inherited = {"arch": "resnet18", "normalization": "none", "activation": "relu"}
    if args.resume_from is not None:
        meta = read_sidecar(args.resume_from)
        inherited = {k: meta.get(k, v) for k, v in inherited.items()}
    chosen = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in inherited.items()}
    if args.resume_from is not None:
        for key, value in chosen.items():
            if value != inherited[key]:
                raise DfrobustError(f"--resume-from {args.resume_from} is a {inherited[key]} model ({key}); drop --{key} {value}")
    return TrainConfig(
        **chosen,
        epochs=args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        init=args.init,
        resume_from=args.resume_from,
        hflip=args.hflip,
        blur_fraction=args.blur_fraction,
        blur_sigma=tuple(args.blur_sigma),
        lipschitz=args.lipschitz,
        lipschitz_estimator=args.lipschitz_estimator,
        lipschitz_batchnorm=args.lipschitz_batchnorm,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
    )


def check_out(args: argparse.Namespace, cfg: Any) -> None:
    """Before any work: --out is a file path, and a model already there is replaced only when it has
    this config, data and start files (then training is skipped or resumed) or with --overwrite/--force."""
    from pathlib import Path

    from dfrobust.data.manifest import manifest_hash
    from dfrobust.errors import DfrobustError
    from dfrobust.models.checkpoint import read_sidecar, sidecar_path
    from dfrobust.train.config import TrainConfig
    from dfrobust.utils.io import require_file_path, sha256_file

    out = require_file_path(args.out, "--out")
    if not (out.exists() or sidecar_path(out).exists()) or args.overwrite or args.force:
        return
    try:
        meta = read_sidecar(out)
        done = TrainConfig.from_dict({**meta["training"], "blur_sigma": tuple(meta["training"]["blur_sigma"])})
        same = done.identity() == cfg.identity()
    except (DfrobustError, KeyError, TypeError, ValueError):
        raise DfrobustError(f"{out} exists and is not a dfrobust model trained by `dfrobust train`; choose another --out") from None
    files = {k: None if v is None else {"path": str(v), "sha256": sha256_file(v)} for k, v in
             (("init", cfg.init), ("resume_from", cfg.resume_from)) if v is None or Path(v).is_file()}  # fmt: skip
    same = same and meta.get("data", {}).get("manifest_hash") == manifest_hash(args.data)
    if not same or any(meta.get("sources", {}).get(k) != v for k, v in files.items()):
        raise DfrobustError(f"{out} holds a model trained with other settings or data; choose another --out, or add --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    """Train and print the validation and test metrics."""
    from dfrobust.evaluate.evaluation import format_metrics_table
    from dfrobust.train.loop import train_detector

    cfg = config_from_args(args)
    check_out(args, cfg)
    meta = train_detector(args.data, cfg, args.out, force=args.force)
    columns = {split: meta["metrics"][split] for split in ("val", "test") if meta["metrics"].get(split)}
    print(f"{args.out}: {meta['arch']} {meta['input_size'][0]}x{meta['input_size'][1]}, epoch {meta['metrics']['selected_epoch']} selected")
    if columns:
        print(format_metrics_table(columns))
    return 0
