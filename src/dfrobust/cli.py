"""The ``dfrobust`` command: one entry point, one subcommand per stage.

Each subcommand is a module ``dfrobust.commands.<name>`` that exposes ``register(subparsers)``
(and ``ORDER``, its place in ``dfrobust --help``); the CLI finds them by package discovery.
Handlers import their heavy dependencies lazily so that ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from types import ModuleType

from dfrobust import __version__
from dfrobust.commands.common import add_log_args
from dfrobust.errors import DfrobustError
from dfrobust.utils.numerics import pin_from_env
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

Every subcommand has --help with an example; --quiet and --verbose work before or after it.

exit status:
  0    success
  1    an unexpected error (a bug: the traceback says where)
  2    a problem to fix on your side: bad arguments or input, a missing file, a full disk,
       a read-only or locked folder (one line says what and what to do)
  130  interrupted (Ctrl-C); finished work is kept, the same command resumes
"""

#: Why writing failed, for the OSError numbers a user can fix.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class _ConsoleFormatter(logging.Formatter):
    """``message`` for information, ``warning: message`` for warnings and errors (``name: `` too when verbose)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.verbose:
            text = f"{record.name}: {text}"
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def _configure_logging(quiet: bool, verbose: bool) -> tuple[logging.Handler, dict[str, int]]:
    """Send dfrobust's log to stderr at the chosen level; returns the handler and the levels to restore."""
    lib, bars = logging.getLogger("dfrobust"), logging.getLogger("dfrobust.progress")
    saved = {"dfrobust": lib.level, "dfrobust.progress": bars.level}
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter(verbose))
    handler.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    lib.setLevel(logging.DEBUG if verbose else logging.INFO)
    bars.setLevel(logging.WARNING if quiet else logging.NOTSET)  # --quiet: no progress bars or lines
    lib.addHandler(handler)
    return handler, saved


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="dfrobust",
        description="Red-team and harden deepfake image detectors: data, training, attacks, defenses, report.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dfrobust {__version__}")
    add_log_args(parser)
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
    handler, saved = _configure_logging(args.quiet, args.verbose)
    try:
        pin_from_env()  # before the first kernel runs: oneDNN, MKL and ATen read their settings once
        return int(args.func(args) or 0)
    except DfrobustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dfrobust status --json | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"error: {DISK_ERRORS[exc.errno]}{where}: free space or fix the permissions and rerun the same command; "
              "finished work is kept", file=sys.stderr)  # fmt: skip
        return 2
    finally:
        logging.getLogger("dfrobust").removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
