"""The ``dfrobust`` command: one entry point, one subcommand per stage.

Each subcommand is a module ``dfrobust.commands.<name>`` that exposes ``register(subparsers)``
(and ``ORDER``, its place in ``dfrobust --help``); the CLI finds them by package discovery.
Handlers import their heavy dependencies lazily so that ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from dfrobust import __version__
from dfrobust.errors import DfrobustError
from dfrobust.utils.plugins import submodules

#: ``ORDER`` of a command module that sets none: listed after the others.
LAST = 1000

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
    for module in command_modules():
        module.register(sub)
    return parser


def command_modules() -> list[ModuleType]:
    """The modules of ``dfrobust.commands`` that define ``register(subparsers)``, by ``ORDER`` then name."""
    modules = [m for m in submodules("dfrobust.commands") if callable(getattr(m, "register", None))]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", LAST), m.__name__))


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
