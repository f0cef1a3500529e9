"""`dfrobust card check`: load a detector card, probe it, print the convention it resolved."""

from __future__ import annotations

import argparse
from typing import Any

from dfrobust.commands.common import add_command, add_device_arg

CARD_EXAMPLE = """\
a detector card (TOML; paths relative to the card's folder):
  source = "python:mypkg.nets:build_detector"   # or "torchvision:resnet50", "timm:xception41",
                                                 #    "dfrobust:models/resnet18.safetensors"
  weights = "weights.pth"          # safetensors, or a state dict read with torch.load(weights_only=True)
  strict = true                    # every state-dict key must match (default true)
  input_size = [224, 224]          # images are resized to this inside the model (bilinear, antialiased)
  normalization = "imagenet"       # "none", "imagenet" or {mean = [r, g, b], std = [r, g, b]}
  output = "logit"                 # "logits" (N x C), "logit" (N x 1 or N), "probs" (N x C, softmax/sigmoid applied)
  fake_index = 1                   # logits/probs: the column meaning fake; logit: 1 if sigmoid(z) = P(fake), 0 if P(real)
  name = "my-detector"             # its label in tables (default: the card's file stem)

source, normalization, output and fake_index are required (a dfrobust: source records them itself).
A python: source is code that runs: loading the card imports that module (found in the card's
folder first, then the working directory and PYTHONPATH) and calls its factory, so use only cards
whose code you trust, as you would any Python module.
In Python, dfrobust.wrap_detector(model, output=..., fake_index=..., input_size=..., normalization=...)
takes the same options as arguments.
Every command that takes a model (evaluate --model, attack --source/--target, purify --model)
accepts a card; a plain .pth/.pt module is never unpickled.
"""


ORDER = 25


def register(subparsers: Any) -> None:
    """Add the `card` subcommand (one action: `check`)."""
    p = add_command(
        subparsers,
        "card",
        "Detector cards: wrap your own detector (check one with `dfrobust card check CARD`)",
        ["dfrobust card check detectors/xception.toml", "dfrobust card check detectors/mine.toml --size 299 299"],
        description="Detector cards wrap your own detector in dfrobust's convention (pixels in [0, 1] in, 2 logits "
        "fake = 0 / real = 1 out).\n\n" + CARD_EXAMPLE,
    )
    actions = p.add_subparsers(dest="card_action", metavar="ACTION")
    check = add_command(
        actions,
        "check",
        "Load a card, run a probe batch, print the resolved convention and the input-gradient norm",
        ["dfrobust card check detectors/xception.toml", "dfrobust card check detectors/mine.toml --size 299 299 --device cuda"],
        description="Load a detector card, run a probe batch of 2 random images and print what it resolved: source, "
        "input size, normalisation, output kind, fake index, parameter count, and the mean norm of the logits' "
        "input gradient. Warns (exit 0) when that gradient is zero or not finite: gradient attacks cannot "
        "attack such a detector.\n\n" + CARD_EXAMPLE,
    )
    check.add_argument("card", metavar="CARD", help="the detector card (.toml)")
    check.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="probe image size (default: the card's input_size, else the fixed probe size it prints)",
    )
    add_device_arg(check)
    check.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def gradient_warning(grad_norm: float) -> str | None:
    """The warning for a detector whose input gradient cannot drive an attack, or ``None``."""
    import math

    if not math.isfinite(grad_norm) or grad_norm == 0:
        return (
            f"the input gradient is {grad_norm}: a detector that blocks gradients cannot be attacked by gradient "
            "methods (fgsm, pgd, cw); use a query attack such as square, and do not read robustness from gradient attacks"
        )
    return None


def run_check(args: argparse.Namespace) -> int:
    """Load the card, probe it, print its convention and input-gradient norm."""
    import torch

    from dfrobust.errors import DfrobustError
    from dfrobust.models.cards import PROBE_SIZE, load_card
    from dfrobust.models.gradients import input_gradient_norms
    from dfrobust.utils.runtime import resolve_device

    device = resolve_device(args.device)
    if args.size is not None and min(args.size) < 1:
        raise DfrobustError(f"--size must be two positive integers, got {args.size}")
    model, meta = load_card(args.card, device, probe_size=tuple(args.size) if args.size else None)
    size = tuple(args.size or meta["input_size"] or PROBE_SIZE)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    grad = float(input_gradient_norms(model, x, device=device).mean())
    with torch.no_grad():
        p_fake = model(x.to(device)).softmax(1)[:, 0].cpu()
    norm = meta["normalization"]
    rows = [
        ("name", meta["name"]),
        ("source", meta["source"]),
        ("weights", meta["weights"] or "none (the source's own)"),
        (
            "input size",
            f"{meta['input_size'][0]}x{meta['input_size'][1]} (resized inside)" if meta["input_size"] else "as given (no resize)",
        ),
        ("normalization", norm["kind"] if norm["kind"] != "custom" else f"mean {norm['mean']}, std {norm['std']}"),
        ("output", f"{meta['output']} {meta['raw_output_shape']} on the probe batch, fake index {meta['fake_index']}"),
        ("wrapped output", "2 logits (fake = 0, real = 1)"),
        ("parameters", f"{meta['num_parameters']:,}"),
        ("probe", f"2 images {size[0]}x{size[1]}: P(fake) {', '.join(f'{v:.3f}' for v in p_fake.tolist())}"),
        ("input gradient", f"mean ||d logits / dx|| = {grad:.4g}"),
    ]
    if meta["missing_keys"] or meta["unexpected_keys"]:
        rows.append(("non-strict load", f"{len(meta['missing_keys'])} missing, {len(meta['unexpected_keys'])} unexpected keys"))
    width = max(len(k) for k, _ in rows)
    print(f"{args.card}: ok")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    for note in [*meta["warnings"], gradient_warning(grad)]:
        if note:
            print(f"warning: {note}")
    return 0
