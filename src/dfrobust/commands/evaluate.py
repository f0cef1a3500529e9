"""`dfrobust evaluate`: Table I metrics of one or more detectors on a split of a dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg

EXAMPLES = [
    "dfrobust evaluate --data data/synth --model models/resnet18.safetensors",
    "dfrobust evaluate --data data/synth --model models/*.safetensors --json results/table1.json",
]

DESCRIPTION = """\
Evaluate detectors on a dataset split: accuracy, AUROC (score P(real)), precision and recall of
the fake and the real class, confusion matrix, cross-entropy and the mean norm of the logits'
input gradient (smaller = smoother detector). Printed as a table; --json writes it as JSON.
"""


def register(subparsers: Any) -> None:
    """Add the `evaluate` subcommand."""
    p = add_command(subparsers, "evaluate", "Evaluate detectors (Table I metrics)", EXAMPLES, DESCRIPTION)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--model", required=True, nargs="+", metavar="FILE", help="detector checkpoint(s) (.safetensors with a .json sidecar)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test", help="which images (default: test)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the metrics as JSON to OUT")
    p.add_argument("--threshold", type=float, default=0.5, help="predict real when P(real) >= this (default: 0.5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--no-gradients", dest="gradients", action="store_false", help="skip the input-gradient norm (faster)")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate each model, print the table, write JSON when asked."""
    from dfrobust.data.dataset import load_split
    from dfrobust.data.manifest import manifest_hash, read_manifest
    from dfrobust.errors import DfrobustError
    from dfrobust.evaluate.evaluation import evaluate_detector, format_metrics_table
    from dfrobust.models.checkpoint import load_detector
    from dfrobust.utils.io import require_file_path, sha256_file, write_json
    from dfrobust.utils.runtime import resolve_device

    if args.batch_size < 1:
        raise DfrobustError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:
        raise DfrobustError(f"--threshold is a probability in [0, 1], got {args.threshold}")
    if args.json:
        require_file_path(args.json, "--json")
    data = Path(args.data)
    if not data.is_dir():
        raise DfrobustError(f"data folder {data} does not exist; make one with `dfrobust data synth --out {data}`")
    manifest = read_manifest(data)
    device = resolve_device(args.device)
    images = load_split(data, None if args.split == "all" else args.split)
    results: dict[str, dict[str, Any]] = {}
    for path in args.model:
        name = Path(path).stem
        if name in results:
            raise DfrobustError(f"two models are named {name}; give files with different names")
        model, meta = load_detector(path, device, expect_input_size=manifest["image_size"])
        metrics = evaluate_detector(model, images, args.batch_size, device, args.threshold, args.gradients)
        results[name] = {"path": str(path), "sha256": sha256_file(path), "arch": meta["arch"], "metrics": metrics}
    print(f"{data} ({args.split} split, {len(images)} images, threshold {args.threshold})")
    print(format_metrics_table({name: r["metrics"] for name, r in results.items()}))
    if args.json:
        write_json(args.json, {"data": str(data), "manifest_hash": manifest_hash(data), "split": args.split, "models": results})
        print(f"wrote {args.json}")
    return 0
