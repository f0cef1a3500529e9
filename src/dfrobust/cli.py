"""The ``dfrobust`` command: one entry point, one subcommand per stage.

Each subcommand lives in ``dfrobust.commands.<name>`` and exposes ``register(subparsers)``;
handlers import their heavy dependencies lazily so that ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dfrobust import __version__
from dfrobust.errors import DfrobustError

#: Subcommand modules, in the order ``dfrobust --help`` lists them.
COMMANDS = ["data", "train", "evaluate", "attack", "purify", "certify", "report", "reproduce", "status"]

EXAMPLES = """\
examples:
  dfrobust reproduce --preset quick --run runs/quick      # the whole paper on synthetic faces
  dfrobust data synth --out data/synth --n 2000 --size 64
  dfrobust train --data data/synth --arch resnet18 --out models/resnet18.safetensors
  dfrobust attack --data data/synth --source models/vgg16.safetensors \\
      --target models/resnet18.safetensors --attack fgsm --out attacks/fgsm

Every subcommand has --help with an example.
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="dfrobust",
        description="Red-team and harden deepfake image detectors: data, training, attacks, defenses, report.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dfrobust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dfrobust.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except DfrobustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
