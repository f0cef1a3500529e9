"""`dfrobust train`: train a detector (paper defaults), optionally Lipschitz-regularised, blur- or noise-augmented, or adversarially trained."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from dfrobust.commands.common import add_command, is_main_process
from dfrobust.commands.dataclass_args import add_dataclass_options, add_options_lazily, dataclass_kwargs

EXAMPLES = [
    "dfrobust train --data data/synth --arch resnet18 --out models/resnet18.safetensors",
    "dfrobust train --data data/synth --arch vgg16 --out models/vgg16.safetensors",
    "dfrobust train --data data/small --arch vgg16_bn_gap --optimizer adam --lr 1e-4 --out models/vgg16.safetensors  # 32 px",
    "dfrobust train --data data/synth --arch resnet18 --lipschitz 50 --out models/resnet18-lip50.safetensors",
    "dfrobust train --data data/synth --resume-from models/resnet18.safetensors --epochs 10 \\\n"
    "      --blur-fraction 0.4 --blur-sigma 3 5 --out models/resnet18-blur.safetensors",
    "dfrobust train --data data/synth --resume-from models/resnet18.safetensors --epochs 2 \\\n"
    "      --adversarial fast --out models/resnet18-at.safetensors  # fine-tune with fast adversarial training",
    "dfrobust train --data data/synth --arch resnet18 --noise-sigma 0.25 --out models/resnet18-smooth.safetensors"
    "  # for `dfrobust certify`",
]

DESCRIPTION = """\
Train a real/fake detector on a dataset folder and save it as FILE.safetensors plus FILE.json
(architecture, input size, full config, data hash, validation and test metrics).

Defaults are the paper's: SGD lr 1e-3, momentum 0.9, batch 16, 5 epochs, random init, pixels in
[0, 1], horizontal flips. The epoch kept is the one with the best accuracy on a validation split
carved from the training split (--val-fraction); the test split is only evaluated. An interrupted
run resumes from its last finished epoch when the same command is run again.

Hardening beyond the paper: --adversarial pgd|fast|trades trains on adversarial examples (the
epoch kept is then the one with the best PGD accuracy on a held-out batch, and a collapse of it,
catastrophic overfitting, is logged and recorded); --noise-sigma trains for randomized smoothing.

Many GPUs: torchrun --nproc_per_node N -m dfrobust train ... trains with DistributedDataParallel;
--batch-size stays the global batch (each process takes 1/N of it), rank 0 writes the files.
"""


#: Position of this command in ``dfrobust --help``.
ORDER = 20


def register(subparsers: Any) -> None:
    """Add the `train` subcommand: --data, --out, --force, and one option per :class:`TrainConfig` field."""
    p = add_command(subparsers, "train", "Train a detector (Table I models, or a hardened one)", EXAMPLES, DESCRIPTION)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder (from `dfrobust data ...`)")
    p.add_argument("--out", required=True, metavar="FILE", help="output FILE.safetensors (sidecar FILE.json beside it)")
    p.add_argument("--force", action="store_true", help="retrain even if FILE already holds a model of these settings")
    p.set_defaults(func=run)
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it holds a model trained with other settings or data")
    add_options_lazily(p, _add_settings)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    from dfrobust.train.config import TrainConfig

    settings = parser.add_argument_group("training settings (the paper's defaults)")
    add_dataclass_options(settings, TrainConfig, inherited_from="--resume-from")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`TrainConfig` of the command line (architecture etc. from --resume-from when not given)."""
    from dfrobust.errors import DfrobustError
    from dfrobust.models.checkpoint import read_sidecar
    from dfrobust.train.config import TrainConfig

    values = dataclass_kwargs(args, TrainConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    inherited = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.metadata.get("inherit")}
    if args.resume_from is not None:
        meta = read_sidecar(args.resume_from)
        inherited = {k: meta.get(k, v) for k, v in inherited.items()}
        for key, value in inherited.items():
            if values[key] is not None and values[key] != value:
                raise DfrobustError(f"--resume-from {args.resume_from} is a {value} model ({key}); drop --{key} {values[key]}")
    for key, value in inherited.items():
        if values[key] is None:
            values[key] = value if value is not None else defaults[key]
    return TrainConfig(**values)


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
    if not (out.exists() or sidecar_path(out).exists()):
        return
    if args.overwrite or args.force:
        # --overwrite replaces a dfrobust model (its safetensors with a dfrobust sidecar), never another file
        side = sidecar_path(out)
        owned = side.is_file() and _is_sidecar(side) and (not out.exists() or out.suffix == ".safetensors")
        if not owned:
            raise DfrobustError(
                f"{out if out.exists() else side} exists and is not a dfrobust model (no dfrobust sidecar {side.name}); "
                "--overwrite replaces only models; choose another --out"
            )
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
        raise DfrobustError(
            f"{out} holds a model trained with other settings or data; choose another --out, or add --overwrite to replace it"
        )


def _is_sidecar(path: Any) -> bool:
    """Whether ``path`` is a dfrobust model sidecar (its ``format`` key)."""
    from dfrobust.models.checkpoint import FORMAT
    from dfrobust.utils.io import read_json

    try:
        meta = read_json(path)
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def run(args: argparse.Namespace) -> int:
    """Train and print the validation and test metrics."""
    from dfrobust.evaluate.evaluation import format_metrics_table
    from dfrobust.train.loop import train_detector

    cfg = config_from_args(args)
    check_out(args, cfg)
    meta = train_detector(args.data, cfg, args.out, force=args.force)
    if not is_main_process():
        return 0  # under torchrun rank 0 prints
    columns = {split: meta["metrics"][split] for split in ("val", "test") if meta["metrics"].get(split)}
    print(f"{args.out}: {meta['arch']} {meta['input_size'][0]}x{meta['input_size'][1]}, epoch {meta['metrics']['selected_epoch']} selected")
    if columns:
        print(format_metrics_table(columns))
    return 0
