"""`dfrobust attack`: craft adversarial test images on a source detector, evaluate every target on them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg, add_seed_arg, add_shard_args, is_main_process
from dfrobust.commands.params import ParamFlag, add_param_flags, chosen_params, defer_arguments, plain_text
from dfrobust.utils.plugins import summary_line

#: Position of this command in ``dfrobust --help``.
ORDER = 40

def register(subparsers: Any) -> None:
    """Add the `attack` subcommand; the attacks and their parameter flags come from the attack registry."""
    parser = add_command(
        subparsers,
        "attack",
        "Attack detectors with any registered attack, whitebox and blackbox; writes images, results.csv, table2.csv, fig3.png",
        [
            "dfrobust attack --data data/synth --source models/vgg16.safetensors "
            "--target models/vgg16.safetensors models/resnet18.safetensors --attack fgsm --out attacks/fgsm-vgg16",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors "
            "--target models/vgg16.safetensors --attack cw --max-images 100 --out attacks/cw-resnet18",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors "
            "--attack pgd --norm l2 --eps 1.0 --out attacks/pgd-l2",
        ],
        description=(
            "Craft adversarial versions of the test images (by default the fakes, the paper's threat) on the source "
            "model, save them as 8-bit PNGs and evaluate every target on them: whitebox when the target is the "
            "source, blackbox (transfer) otherwise. Parameters default to the paper's values. A rerun of the same "
            "command resumes an interrupted run."
        ),
    )
    defer_arguments(parser, _add_arguments)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `attack`; the attack choices and parameter flags import the attack registry."""
    from dfrobust.attacks.base import attack_classes

    classes = attack_classes()
    parser.add_argument("--data", required=True, type=Path, metavar="DIR", help="dataset folder (its test split is attacked)")
    parser.add_argument("--source", required=True, type=Path, metavar="FILE", help="checkpoint the attack is crafted on")
    parser.add_argument(
        "--target", nargs="+", type=Path, default=[], metavar="FILE",
        help="checkpoints evaluated on the adversarial images (the source is always evaluated too)",
    )  # fmt: skip
    parser.add_argument(
        "--attack", required=True, choices=list(classes), metavar="{" + ",".join(classes) + "}",
        help="which attack: " + "; ".join(f"{n} ({plain_text(summary_line(c)).rstrip('.')})" for n, c in classes.items()),
    )  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    opts = parser.add_argument_group("run")
    opts.add_argument("--classes", choices=["fake", "real", "both"], default="fake", help="test images to attack (default: fake)")
    opts.add_argument("--max-images", type=int, metavar="N", help="attack a seeded subset of N images")
    opts.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    opts.add_argument("--jpeg-quality", type=int, metavar="Q", help="also evaluate after a JPEG round trip at quality Q")
    add_shard_args(opts)
    add_device_arg(opts)
    add_seed_arg(opts)  # also the seed of a seeded attack (AttackConfig fills its `seed` parameter)
    # after the run options, so that a plug-in parameter cannot shadow one of them
    flags = add_param_flags(parser, classes, kind="attack", skip=("seed",))
    parser.set_defaults(func=run_command, _param_flags=flags)


def attack_params(args: argparse.Namespace) -> dict[str, Any]:
    """The attack parameters given on the command line (a one-line error for a flag of another attack)."""
    flags: dict[str, ParamFlag] = args._param_flags
    return chosen_params(args, flags, args.attack)


def run_command(args: argparse.Namespace) -> int:
    """Run the attack and print the per-target accuracies."""
    from dfrobust.attacks.experiment import AttackConfig, run_attack

    cfg = AttackConfig(
        attack=args.attack,
        params=attack_params(args),
        batch_size=args.batch_size,
        classes=args.classes,
        max_images=args.max_images,
        seed=args.seed,
        device=args.device,
        jpeg_quality=args.jpeg_quality,
    )
    summary = run_attack(args.data, args.source, args.target, cfg, args.out, rank=args.rank, world_size=args.world_size)
    if not summary.get("complete"):
        print(
            f"rank {summary['rank']} of {summary['world_size']}: {summary['batches_done']}/{summary['batches_total']} batches "
            f"done in {args.out}; the results are merged when the last shard finishes (or rerun any shard)"
        )
        return 0
    if not is_main_process():
        return 0  # under torchrun rank 0 draws and prints
    from dfrobust.report.attack_figures import plot_fig3
    from dfrobust.utils.io import read_csv

    plot_fig3(read_csv(args.out / "table2.csv"), args.out / "fig3.png")
    print(f"{summary['attack']['label']} crafted on {next(iter(summary['source']))}, {summary['dataset']['n_images']} images:")
    for name, res in summary["results"].items():
        line = (
            f"  {name:<20} {res['setting']:<9} accuracy {res['clean_accuracy']:6.1%} clean -> "
            f"{res['perturbed_accuracy']:6.1%} perturbed  (PSNR {res['mean_psnr'] or float('inf'):.1f} dB)"
        )
        if "jpeg_accuracy" in res:
            line += f", {res['jpeg_accuracy']:.1%} after JPEG q{res['jpeg_quality']}"
        print(line)
    print(f"results in {args.out}: results.csv, table2.csv, fig3.png, summary.json, images/")
    return 0
