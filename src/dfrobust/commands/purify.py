"""`dfrobust purify`: the Deep Image Prior defense study (paper section V, Tables III/IV, Figs 5/6)."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg, add_seed_arg, add_shard_args, is_main_process
from dfrobust.commands.params import defer_arguments


#: Position of this command in ``dfrobust --help``.
ORDER = 50


def register(subparsers: Any) -> None:
    """Add the `purify` subcommand."""
    parser = add_command(
        subparsers,
        "purify",
        "Deep Image Prior defense: purify a stratified subsample of attacked and clean test images",
        [
            "dfrobust purify --data runs/R/data --model runs/R/models/resnet18-blur.safetensors \\\n"
            "      --adv runs/R/attacks/fgsm-vgg16 runs/R/attacks/fgsm-resnet18-blur runs/R/attacks/cw-vgg16 \\\n"
            "      runs/R/attacks/cw-resnet18-blur --out runs/R/dip",
            "dfrobust purify --data data/synth --model models/resnet18.safetensors --adv attacks/fgsm \\\n"
            "      --out dip-quick --per-category 2 --iterations 500 --stop-at 300 --batch-size 16",
        ],
        description=(
            "Purify 10 images per category with DIP (perturbed fake-wrong / fake-correct per attack folder, "
            "clean fake-correct, clean real-correct), classify the output at iteration T, and write "
            "trajectories.csv, table3.csv, table4.csv, sweep.csv, fig5.png, fig6.png and summary.json. "
            "Resumable: finished batches are kept under OUT/parts."
        ),
    )
    parser.add_argument(
        "--data",
        required=True,
        help="dataset folder, or a folder or .csv/.json list of real and fake images read in place (its test split is sampled)",
    )
    parser.add_argument(
        "--model", required=True, help="the classifier (.safetensors or a detector card .toml); the paper uses the blur-augmented ResNet-18"
    )
    parser.add_argument("--adv", required=True, nargs="+", metavar="DIR", help="attack output folders (dfrobust attack --out)")
    parser.add_argument("--out", required=True, help="output folder")
    defer_arguments(parser, _add_dip_arguments)
    parser.add_argument("--no-transforms", action="store_true", help="skip the JPEG and blur baselines")
    add_shard_args(parser)
    add_device_arg(parser)
    add_seed_arg(parser)
    parser.set_defaults(func=run)


def _add_dip_arguments(parser: argparse.ArgumentParser) -> None:
    """The DIP options, their defaults read from :class:`DipConfig` and :class:`DipStudyConfig` (their one home).

    Every flag defaults to ``None``: :func:`run` passes only what was given, so the dataclasses' defaults apply.
    """
    from dfrobust.defenses.dip import CLASSIFY_FRACTION, DipConfig, default_classify_at
    from dfrobust.studies.dip_study import DipStudyConfig

    study, dip = DipStudyConfig(), DipConfig()
    parser.add_argument("--per-category", type=int, default=None, help=f"images per category (default: {study.per_category})")
    parser.add_argument("--iterations", type=int, default=None, help=f"DIP iterations (default: {dip.iterations})")
    parser.add_argument(
        "--classify-at",
        type=int,
        default=None,
        help=f"classification iteration T (default: {CLASSIFY_FRACTION * 100:g}%% of --iterations, {default_classify_at(dip.iterations)})",
    )
    parser.add_argument(
        "--stop-at", type=int, default=None, help="stop the optimisation at this iteration (>= T) when nothing later is wanted"
    )
    parser.add_argument(
        "--record-every", type=int, default=None, help=f"record P(real), MSE, PSNR every k iterations (default: {dip.record_every})"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help=f"images purified at once, one network each (default: {study.batch_size})"
    )
    parser.add_argument(
        "--amp", choices=["none", "bf16"], default=None, help=f"bfloat16 autocast for the generator (CUDA; default: {dip.amp})"
    )
    parser.add_argument(
        "--early-stop",
        action="store_true",
        default=None,
        help="also score each image at its ES-WMV stopping point (Wang et al.; method dip-es); the run still goes to the end",
    )
    parser.add_argument("--es-window", type=int, default=None, help=f"ES-WMV: outputs in the variance window (default: {dip.es_window})")
    parser.add_argument(
        "--es-patience",
        type=int,
        default=None,
        help=f"ES-WMV: iterations without a new variance minimum before an image stops (default: {dip.es_patience})",
    )


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def run(args: argparse.Namespace) -> int:
    """Run the study and print where the results are."""
    from dfrobust.defenses.dip import DipConfig
    from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study

    cfg = DipStudyConfig(
        dip=DipConfig(**_given(args, "iterations", "record_every", "amp", "early_stop", "es_window", "es_patience")),
        **_given(args, "per_category", "classify_at", "stop_at", "batch_size"),
        seed=args.seed,
        device=args.device,
        transforms=not args.no_transforms,
    )
    summary = run_dip_study(args.data, args.model, args.adv, args.out, cfg, rank=args.rank, world_size=args.world_size)
    if not summary.get("complete"):
        print(
            f"rank {summary['rank']} of {summary['world_size']}: batches done; {summary['missing_images']} image(s) wait for other ranks ({args.out})"
        )
        return 0
    if not is_main_process():
        return 0  # under torchrun rank 0 draws and prints
    from dfrobust.report.dip_figures import draw_dip_figures

    draw_dip_figures(args.out, args.out)
    rows = {(r["method"], r["threshold"]): r for r in summary["table3"]}
    for (method, thr), r in rows.items():
        if method in ("baseline", "dip", "dip-es"):
            print(
                f"{method:>8} @ {thr:g}: accuracy {r['accuracy']:.3f}  AUROC {r['auroc'] if r['auroc'] is None else round(r['auroc'], 3)}"
            )
    if es := summary.get("early_stop"):
        print(
            f"early stopping (window {es['window']}, patience {es['patience']}): {es['stopped']} of {es['n']} images stopped; "
            f"median kept iteration {es['es_iteration_median']:g}; iterations saved against T: {es['iterations_saved_mean']:.0f} on average"
        )
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.out}/table3.csv, table4.csv, sweep.csv, trajectories.csv, fig5.png, fig6.png, summary.json")
    return 0
