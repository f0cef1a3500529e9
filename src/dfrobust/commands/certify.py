"""`dfrobust certify`: randomized-smoothing certificates (Cohen et al. 2019) of a detector on test images."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, is_main_process
from dfrobust.commands.dataclass_args import add_dataclass_options, add_options_lazily, dataclass_kwargs

EXAMPLES = [
    "dfrobust certify --model models/resnet18-smooth.safetensors --data data/synth --sigma 0.25 "
    "--n0 100 --n 1000 --alpha 0.001 --out certify/resnet18-smooth",
    "dfrobust certify --model models/resnet18-smooth.safetensors --data data/synth --sigma 0.25 "
    "--n 200 --max-images 20 --out certify/quick",
]

DESCRIPTION = """\
Certify the smoothed version of a detector, g(x) = the class the detector gives most often on
x + N(0, sigma^2) noise, on the test images: per image the smoothed prediction and an L2 radius
within which that prediction provably holds (with probability 1 - alpha over the noise), or an
abstention. The top class is picked from n0 noisy samples, its probability bounded from n more
(Clopper-Pearson); radius = sigma * Phi^-1(pA_lower). Train the detector with the same
noise (`dfrobust train --noise-sigma SIGMA`) for useful radii.

Writes OUT/certify.csv (one row per image), OUT/curve.csv (certified accuracy vs radius) and
OUT/summary.json (certified accuracy at radius 0, 0.25, 0.5 and 1.0 with Wilson 95% intervals).
An interrupted run resumes when the same command is run again.
"""


ORDER = 55


def register(subparsers: Any) -> None:
    """Add the `certify` subcommand: --model, --data, --out, and one option per :class:`CertifyConfig` field."""
    p = add_command(subparsers, "certify", "Certified L2 robustness by randomized smoothing", EXAMPLES, DESCRIPTION)
    p.add_argument("--model", required=True, metavar="FILE", help="detector checkpoint (.safetensors with a .json sidecar)")
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="dataset folder, or a folder or .csv/.json list of real and fake images read in place (its test split is certified)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)
    add_options_lazily(p, _add_settings)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    from dfrobust.studies.certification import CertifyConfig

    add_dataclass_options(parser.add_argument_group("certification settings"), CertifyConfig)


def run(args: argparse.Namespace) -> int:
    """Certify and print certified accuracy at the report radii."""
    from dfrobust.studies.certification import CertifyConfig, run_certification

    cfg = CertifyConfig(**dataclass_kwargs(args, CertifyConfig))
    summary = run_certification(args.data, args.model, cfg, args.out)
    if not is_main_process():
        return 0  # under torchrun rank 0 prints
    print(
        f"{args.model}: sigma {cfg.sigma:g}, n {cfg.n}, alpha {cfg.alpha:g}, {summary['n_images']} images, {summary['abstained']} abstained"
    )
    print("radius  certified accuracy  (95% interval)")
    for point in summary["certified_accuracy"]:
        print(
            f"{point['radius']:6.2f}  {point['accuracy']:.3f} ({point['certified']}/{point['n']})  "
            f"[{point['ci_low']:.3f}, {point['ci_high']:.3f}]"
        )
    print(f"wrote {args.out}/certify.csv, curve.csv, summary.json")
    return 0
