"""`dfrobust attack`: craft adversarial test images on a source detector, evaluate every target on them."""

from __future__ import annotations

import argparse
import inspect
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
            "dfrobust attack --data data/synth --source models/resnet18.safetensors --attack cw --search-steps 2 "
            "--max-steps 100 --max-images 32 --out attacks/cw-explore   # fast, for exploration",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors --attack pgd --norm l2 --eps 1.0 --out attacks/pgd-l2",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors --attack apgd --out attacks/apgd-resnet18",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors --attack square "
            "--survivors-of attacks/apgd-resnet18 --out attacks/square-resnet18   # then, AutoAttack's chain: Square on APGD's survivors",
            "dfrobust attack --data data/synth --source models/vgg16.safetensors --source models/resnet18.safetensors "
            "--target models/resnet18-blur.safetensors --attack dimifgsm --out attacks/dimifgsm-ens",
            "dfrobust attack --data data/synth --source models/resnet18-blur.safetensors --attack apgd --steps 50 "
            "--through dip --eot 4 --bpda fitted-blur --attack-purifier-set dip.iterations=200 --eval-draws 5 --out adaptive/dip",
            "dfrobust attack --data data/synth --source models/resnet18-blur.safetensors --attack apgd --steps 10 --max-images 8 "
            "--through dip --purifier-set iterations=300 classify_at=300 --bpda exact --eval-draws 3 --out adaptive/dip-exact",
            "dfrobust attack --data data/synth --source models/resnet18.safetensors --attack pgd "
            "--robust-to jpeg:50-95,resize:0.5-1.0,blur:0-1 --out attacks/pgd-platform",
            "dfrobust attack --data data/videos --source models/resnet18.safetensors --attack fgsm --fps 4 --crf 23 --out attacks/fgsm-videos",
        ],
        description=(
            "Craft adversarial versions of the test images (by default the fakes, the paper's threat) on the source "
            "model, save them as 8-bit PNGs and evaluate every target on them: whitebox when the target is the "
            "source, blackbox (transfer) otherwise. Several --source models are attacked as one: the ensemble of their "
            "logits (averaged), a stronger transfer surrogate; the ensemble is then the whitebox target and a target that "
            "is one of its members is scored as 'ensemble-member'. A rerun of the same command resumes an interrupted run.\n"
            "Parameters default to the paper's values, which are slow on a CPU (CW: searches x steps per image; Square: "
            "queries per image): the budget is printed before the attack starts, and an ETA after its first batch. For "
            "exploration start small: --max-images 32 with --search-steps 2 --max-steps 100 (CW), --queries 500 (Square) "
            "or --steps 10 (APGD)."
        ),
    )
    defer_arguments(parser, _add_arguments)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `attack`; the attack choices and parameter flags import the attack registry."""
    from dfrobust.attacks.base import attack_classes

    classes = attack_classes()
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="dataset folder, or a folder or .csv/.json list of real and fake images read in place (its test split is attacked)",
    )
    parser.add_argument(
        "--source", required=True, type=Path, action="append", metavar="FILE",
        help="checkpoint or detector card the attack is crafted on; repeat it to craft on the ensemble of several "
             "(their logits averaged; same input size and classes), e.g. --source a.safetensors --source b.toml",
    )  # fmt: skip
    parser.add_argument(
        "--source-name",
        metavar="NAME",
        help="the ensemble's name in the results' source column (default: ensemble(A+B), the members' names)",
    )
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
    opts.add_argument(
        "--survivors-of", nargs="+", type=Path, default=[], metavar="DIR",
        help="finished attack runs on the same --source, in chain order (AutoAttack's): attack only the images none of "
             "them fooled; the others get a row with skipped = 'fooled by <attack>' and count as fooled in robust accuracy",
    )  # fmt: skip
    from dfrobust.studies.attack_run import AttackConfig
    from dfrobust.studies.adaptive_run import run_adaptive

    adaptive_batch = inspect.signature(run_adaptive).parameters["batch_size"].default
    opts.add_argument(
        "--batch-size", type=int, help=f"images per batch (default: {AttackConfig.batch_size}; {adaptive_batch} with --through)"
    )
    opts.add_argument("--jpeg-quality", type=int, metavar="Q", help="also evaluate after a JPEG round trip at quality Q")
    add_shard_args(opts)
    add_device_arg(opts)
    add_seed_arg(opts)  # also the seed of a seeded attack (AttackConfig fills its `seed` parameter)
    _add_adaptive_arguments(parser)
    from dfrobust.commands.platform_args import add_platform_args, add_video_args

    add_platform_args(parser)  # --robust-to CHAIN (EOT over platform transforms), video codec options
    add_video_args(parser)
    # after the run options, so that a plug-in parameter cannot shadow one of them
    flags = add_param_flags(parser, classes, kind="attack", skip=("seed",))
    parser.set_defaults(func=run_command, _param_flags=flags)


#: Options of an adaptive run (``--through``), each named as the :func:`run_adaptive` parameter it sets.
ADAPTIVE_OPTIONS = ("eot", "bpda", "unroll_steps", "segment", "eval_draws", "nonadaptive")


def _add_adaptive_arguments(parser: argparse.ArgumentParser) -> None:
    """``--through PURIFIER`` and its options; defaults come from :func:`run_adaptive`'s signature."""
    from dfrobust.defenses.adaptive import BPDA_MODES
    from dfrobust.studies.adaptive_run import run_adaptive
    from dfrobust.defenses.base import purifier_classes

    defaults = {k: p.default for k, p in inspect.signature(run_adaptive).parameters.items()}
    names = list(purifier_classes())
    group = parser.add_argument_group(
        "adaptive attack through a purifier",
        "BPDA + EOT (Athalye et al. 2018): attack model(P(x)) with a stand-in gradient for P, averaged over P's draws; "
        "the defense is then evaluated on one purification per image and on the worst of --eval-draws",
    )
    group.add_argument(
        "--through",
        choices=names,
        metavar="{" + ",".join(names) + "}",
        help="attack through this registered purifier (the source is the defended detector)",
    )
    group.add_argument(
        "--purifier-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="the defense's purifier parameters, e.g. iterations=2000 (default: the purifier's own)",
    )
    group.add_argument(
        "--attack-purifier-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides for the purifier the attack sees, e.g. dip.iterations=200 (cheaper, as Lee & Kim); "
        "the evaluation always uses the defense's settings",
    )
    group.add_argument("--eot", type=int, help=f"purifier draws averaged per gradient (default: {defaults['eot']})")
    group.add_argument(
        "--bpda",
        choices=BPDA_MODES,
        help="backward stand-in for the purifier: identity, its own surrogate, a blur fitted to its output, "
        f"DIP's last fitting steps unrolled, or exact (DIP: the true gradient through its whole fit) (default: {defaults['bpda']})",
    )
    group.add_argument(
        "--segment",
        type=int,
        help="DIP fitting steps per recomputed segment with --bpda exact: memory ~ steps/segment saved states "
        "plus one segment's graph (default: about the square root of the steps)",
    )
    group.add_argument(
        "--unroll-steps", type=int, help=f"DIP steps differentiated with --bpda unroll (default: {defaults['unroll_steps']})"
    )
    group.add_argument("--eval-draws", type=int, help=f"purifications per image in the evaluation (default: {defaults['eval_draws']})")
    group.add_argument(
        "--nonadaptive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"also craft the attack on the bare detector and evaluate it purified (default: {'on' if defaults['nonadaptive'] else 'off'})",
    )


def purifier_overrides(items: list[str], purifier: str, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` (or ``PURIFIER.KEY=VALUE``) strings as purifier parameters; values read as TOML, lists as tuples."""
    from dfrobust.config import parse_override
    from dfrobust.errors import DfrobustError

    params: dict[str, Any] = {}
    for text in items:
        if "=" not in text:
            raise DfrobustError(f"{flag} wants KEY=VALUE (e.g. {purifier}.iterations=200), got {text!r}")
        keys, value = parse_override(text)
        if len(keys) == 2 and keys[0] == purifier:
            keys = keys[1:]
        if len(keys) != 1:
            raise DfrobustError(f"{flag} {text}: the key is a parameter of purifier {purifier} (KEY or {purifier}.KEY)")
        params[keys[0]] = tuple(value) if isinstance(value, list) else value
    return params


def run_adaptive_command(args: argparse.Namespace) -> int:
    """``--through``: craft through the purifier and print the defense's accuracies."""
    from dfrobust.studies.adaptive_run import run_adaptive
    from dfrobust.errors import DfrobustError

    if len(args.source) > 1 or args.source_name is not None:
        raise DfrobustError("--through attacks one defended detector; give one --source (no ensemble, no --source-name)")
    source = args.source[0]
    if any(t.resolve() != source.resolve() for t in args.target) or args.jpeg_quality:
        raise DfrobustError("--target and --jpeg-quality do not apply with --through: the defense is evaluated on the source detector")
    options = {k: getattr(args, k) for k in (*ADAPTIVE_OPTIONS, "batch_size") if getattr(args, k) is not None}
    params = attack_params(args)  # run_adaptive gives a seeded attack --seed when its seed is not set
    summary = run_adaptive(
        args.data,
        source,
        args.through,
        purifier_overrides(args.purifier_set, args.through, "--purifier-set"),
        args.attack,
        params,
        args.out,
        attack_purifier_params=purifier_overrides(args.attack_purifier_set, args.through, "--attack-purifier-set"),
        images=args.max_images,
        seed=args.seed,
        device=args.device,
        classes=args.classes,
        rank=args.rank,
        world_size=args.world_size,
        **options,
    )
    if not summary.get("complete"):
        print(
            f"rank {args.rank}: {summary['batches_done']}/{summary['batches_total']} batches done in {args.out}; "
            "the results are merged when the last shard finishes (or rerun any shard)"
        )
        return 0

    def pct(key: str) -> str:
        value, ci = summary.get(key), summary.get(f"{key}_ci")
        return "n/a" if value is None else f"{value:6.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"

    print(f"{summary['attack']} through {summary['defense']} (BPDA {summary['bpda']}, EOT {summary['eot']}), n = {summary['n']}:")
    print(f"  clean                        {pct('accuracy_clean')}")
    print(f"  clean, purified              {pct('accuracy_clean_purified')}")
    print(
        f"  non-adaptive, purified       {pct('accuracy_nonadaptive')}  worst of {summary['eval_draws']}: {pct('accuracy_nonadaptive_worst')}"
    )
    print(f"  adaptive, unpurified         {pct('accuracy_adaptive_unpurified')}")
    print(f"  adaptive, purified           {pct('accuracy_adaptive')}  worst of {summary['eval_draws']}: {pct('accuracy_adaptive_worst')}")
    print(f"  adaptive, majority of {summary['eval_draws']:<6} {pct('accuracy_adaptive_vote')}")
    print(f"  adaptive, any iterate        {pct('accuracy_adaptive_any_iterate')}  (DiffPure's BPDA+EOT rule)")
    print(f"  defended (clean and attacked right) {pct('accuracy_defended')}")
    if summary.get("attack_purifier_cheaper"):
        print("  (the attack saw a cheaper purifier than the defense: --attack-purifier-set)")
    if summary.get("fitted_sigma_mean") is not None:
        print(f"  fitted blur sigma (mean)     {summary['fitted_sigma_mean']:.2f} px")
    folders = "images/, images-nonadaptive/" if summary["config"]["nonadaptive"] else "images/"
    print(f"results in {args.out}: results.csv, summary.json, {folders}")
    return 0


def attack_params(args: argparse.Namespace) -> dict[str, Any]:
    """The attack parameters given on the command line (a one-line error for a flag of another attack), checked by
    the constraints the attack declares before any data or model is read."""
    from dfrobust.attacks.base import check_attack_params

    flags: dict[str, ParamFlag] = args._param_flags
    return check_attack_params(args.attack, chosen_params(args, flags, args.attack))


def run_command(args: argparse.Namespace) -> int:
    """Run the attack and print the per-target accuracies (with ``--through``: the adaptive run)."""
    from dfrobust.studies.attack_run import AttackConfig, run_attack
    from dfrobust.errors import DfrobustError

    if args.survivors_of and (args.through is not None or args.robust_to):
        raise DfrobustError("--survivors-of chains plain attack runs; it does not combine with --through or --robust-to")
    if args.through is not None:
        if args.robust_to or args.heldout:
            raise DfrobustError("--robust-to and --heldout do not combine with --through (the purifier is the transformation there)")
        return run_adaptive_command(args)
    given = [
        f"--{k.replace('_', '-')}" for k in (*ADAPTIVE_OPTIONS, "purifier_set", "attack_purifier_set") if getattr(args, k) not in (None, [])
    ]
    if given:
        raise DfrobustError(f"{', '.join(given)} only apply with --through PURIFIER")
    from dfrobust.commands.platform_args import check_image_platform_args, run_attack_videos
    from dfrobust.data.video import has_videos

    if has_videos(args.data):
        if args.survivors_of:
            raise DfrobustError("--survivors-of chains image attack runs; a folder of videos has none to chain")
        return run_attack_videos(args, attack_params(args))
    check_image_platform_args(args)

    cfg = AttackConfig(
        attack=args.attack,
        params=attack_params(args),
        classes=args.classes,
        max_images=args.max_images,
        seed=args.seed,
        device=args.device,
        jpeg_quality=args.jpeg_quality,
        robust_to=args.robust_to,
        heldout=args.heldout,
        robust_eot=args.robust_eot,
        **({"batch_size": args.batch_size} if args.batch_size is not None else {}),
    )
    summary = run_attack(
        args.data,
        args.source,
        args.target,
        cfg,
        args.out,
        rank=args.rank,
        world_size=args.world_size,
        source_name=args.source_name,
        survivors_of=args.survivors_of,
    )
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
    if "survivors" in summary:
        chain = summary["survivors"]
        print(f"  on survivors of {' + '.join(chain['of'])}: {chain['n_attacked']} attacked, {chain['n_skipped']} skipped (already fooled)")
    for name, res in summary["results"].items():
        if not res["n"]:
            print(f"  {name:<20} {res['setting']:<9} no image attacked (every one was fooled earlier in the chain)")
            continue
        line = (
            f"  {name:<20} {res['setting']:<9} accuracy {res['clean_accuracy']:6.1%} clean -> "
            f"{res['perturbed_accuracy']:6.1%} perturbed  (PSNR {res['mean_psnr'] or float('inf'):.1f} dB)"
        )
        if "jpeg_accuracy" in res:
            line += f", {res['jpeg_accuracy']:.1%} after JPEG q{res['jpeg_quality']}"
        if "chain_accuracy" in res:
            line += f", {res['chain_accuracy']:.1%} after the chain, {res['heldout_accuracy']:.1%} after the held-out chain"
        print(line)
    print(f"results in {args.out}: results.csv, table2.csv, fig3.png, summary.json, images/")
    return 0
