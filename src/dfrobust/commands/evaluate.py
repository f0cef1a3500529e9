"""`dfrobust evaluate`: Table I metrics (+ AP, EER) of one or more detectors on a dataset folder, or on
the user's own folder or image list read in place."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg
from dfrobust.constants import DECISION_THRESHOLD

EXAMPLES = [
    "dfrobust evaluate --data data/synth --model models/resnet18.safetensors",
    "dfrobust evaluate --data data/synth --model models/*.safetensors --json results/table1.json",
    "dfrobust evaluate --data CNNDetection/test --model detectors/mine.toml --split all   # per-generator rows",
    "dfrobust evaluate --data data/videos --model models/resnet18.safetensors --fps 4 --json video.json   # real/ + fake/ clips",
]

DESCRIPTION = """\
Evaluate detectors on a dataset split: accuracy, AUROC (score P(real); the same with fake as the
positive class), AP and EER with fake as the positive class (DeepfakeBench's convention), precision
and recall of the fake and the real class, confusion matrix, cross-entropy and the mean norm of the
logits' input gradient (smaller = smoother detector). Printed as a table; --json writes it as JSON
with the conventions stated.

--data is a dfrobust dataset folder, or your own images read in place, without re-encoding:
real/ + fake/, {train,val,test}/{real,fake}/, 0_real/ + 1_fake/ (CNNDetection/UnivFD), also nested
one folder per generator (test/progan/0_real: one row per generator), or a .csv/.json list of
path,label[,split][,group] (paths relative to the list; labels real/fake). Images are read lazily
and resized to the detector's input size; unreadable files are skipped and listed. A folder
without splits is evaluated whole.

A folder of videos (real/ + fake/ or 0_real/ + 1_fake/ of .mp4 etc.; the 'video' extra) is
sampled at --fps frames per second (at most --max-frames per clip), one label per video: metrics
at frame level and at video level (a video's score is the mean of its frames' scores; the JSON's
video_auroc, video_ap, video_eer).

Under torchrun (torchrun --nproc_per_node N -m dfrobust evaluate ...) the ranks share the
batches and rank 0 prints and writes the metrics of all images, the same as one process.
"""


#: Position of this command in ``dfrobust --help``.
ORDER = 30


def register(subparsers: Any) -> None:
    """Add the `evaluate` subcommand."""
    p = add_command(subparsers, "evaluate", "Evaluate detectors (Table I metrics, AP, EER)", EXAMPLES, DESCRIPTION)
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder, your folder of real/fake images, or a .csv/.json list")
    p.add_argument(
        "--model", required=True, nargs="+", metavar="FILE", help="dfrobust checkpoint(s) (.safetensors) or detector card(s) (.toml)"
    )
    p.add_argument("--split", choices=["test", "train", "val", "all"], default="test", help="which images (default: test)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the metrics as JSON to OUT")
    p.add_argument("--threshold", type=float, default=DECISION_THRESHOLD, help="predict real when P(real) >= this (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--workers", type=int, default=2, help="image-reading processes (default: 2)")
    p.add_argument("--no-gradients", dest="gradients", action="store_false", help="skip the input-gradient norm (faster)")
    add_device_arg(p)
    from dfrobust.commands.platform_args import add_video_args

    add_video_args(p)  # a folder of real/ and fake/ videos: frame- and video-level metrics
    p.set_defaults(func=run)


def _group_table(groups: dict[str, dict[str, Any]]) -> str:
    keys = [("n", "n"), ("accuracy", "accuracy"), ("auroc", "AUROC"), ("ap_fake_positive", "AP"), ("eer_fake_positive", "EER")]
    width = max(len("group"), *(len(g) for g in groups))
    lines = ["group".ljust(width) + "".join(f"  {label:>8}" for _, label in keys)]
    for name, m in groups.items():
        cells = ["-" if m.get(k) is None else (f"{m[k]:.4f}" if isinstance(m[k], float) else str(m[k])) for k, _ in keys]
        lines.append(name.ljust(width) + "".join(f"  {c:>8}" for c in cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate each model, print the table (and per-group rows), write JSON when asked."""
    from dfrobust.data.layouts import scan_layout
    from dfrobust.errors import DfrobustError
    from dfrobust.evaluate.evaluation import evaluate_items, format_metrics_table
    from dfrobust.evaluate.metrics import CONVENTIONS
    from dfrobust.models.loading import load_model_arg, model_display_name
    from dfrobust.utils import distributed
    from dfrobust.utils.io import WRITTEN_BY, require_output_file, write_json

    if args.batch_size < 1 or args.workers < 0:
        raise DfrobustError("--batch-size must be >= 1 and --workers >= 0")
    if not 0.0 <= args.threshold <= 1.0:
        raise DfrobustError(f"--threshold is a probability in [0, 1], got {args.threshold}")
    if args.json:
        require_output_file(args.json, "evaluate", "--json")
    from dfrobust.data.video import has_videos

    if has_videos(args.data):
        from dfrobust.commands.platform_args import run_evaluate_videos

        return run_evaluate_videos(args)
    layout = scan_layout(args.data)
    if layout.kind == "dfrobust":  # as attack, train, certify and purify do: the images are the ones the manifest hashed
        from dfrobust.data.manifest import hash_mismatch, verify_dataset

        problems = verify_dataset(args.data, full=False)["problems"]
        if problems:
            raise DfrobustError(hash_mismatch(args.data, problems[0]["path"]) + f" ({len(problems)} file(s) in all)")
    ctx = distributed.setup(args.device)  # torchrun: every rank scores its share of the batches
    device = distributed.device_for(args.device, ctx)
    split = None if args.split == "all" else args.split
    items = layout.select(split)
    names = [model_display_name(path) for path in args.model]  # every argument checked before any work
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DfrobustError(f"two models are named {dup}; give files (or cards) with different names")
    results: dict[str, dict[str, Any]] = {}
    skipped: list[dict[str, str]] = []
    for name, path in zip(names, args.model):
        model, meta = load_model_arg(path, device, expect_input_size=layout.image_size)
        size = layout.image_size or meta.get("input_size")
        if size is None:
            raise DfrobustError(f"{path} has no input_size, so the images of {args.data} cannot be batched; add input_size to the card")
        out = evaluate_items(model, items, tuple(size), args.batch_size, device, args.threshold, args.gradients, args.workers, ctx)
        skipped = out["skipped"]
        results[name] = {"path": str(path), "sha256": meta["sha256"], "kind": meta["kind"], "arch": meta.get("arch"),
                         "input_size": list(size), "metrics": out["metrics"]}  # fmt: skip
        if out["groups"]:
            results[name]["groups"] = out["groups"]
    if not ctx.is_main:
        return 0  # rank 0 prints and writes
    scope = f"{args.split} split" if layout.splits or split is None else "no splits: every image"
    n = next(iter(results.values()))["metrics"]["n"]
    print(f"{args.data} ({layout.description}; {scope}, {n} images, threshold {args.threshold})")
    print(format_metrics_table({name: r["metrics"] for name, r in results.items()}))
    print("AUROC is the same with either class positive; AP and EER take fake as the positive class (DeepfakeBench).")
    for name, r in results.items():
        if "groups" in r:
            print(f"\n{name} per group:")
            print(_group_table(r["groups"]))
    if skipped:
        shown = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        print(f"skipped {len(skipped)} unreadable file(s): {shown}{' ...' if len(skipped) > 5 else ''}")
    if args.json:
        record = {WRITTEN_BY: "evaluate", "data": layout.summary(), "split": args.split, "threshold": args.threshold, "conventions": CONVENTIONS,
                  "models": results, "skipped": skipped}  # fmt: skip
        if layout.kind == "dfrobust":
            record["manifest_hash"] = layout.fingerprint()
        write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0
