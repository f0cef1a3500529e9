"""Command-line options generated from a settings dataclass: one flag per field, its default from the field.

A field ``name: T = field(default=D, metadata={"help": ..., ...})`` becomes ``--name`` (underscores
as dashes) with the type of ``T``, default ``D`` and the help text, to which ``(default: D)`` is
added from the field, so that a default is written in one place only. Metadata keys:

* ``help``: what the setting means (required);
* ``choices``: allowed values; ``metavar``: the value's name (a tuple for a pair);
* ``inherit``: the flag defaults to ``None`` on the command line, meaning "the field's default, or
  what the command inherits (e.g. from a model it continues)"; the command resolves it.

``bool`` fields become ``--name`` (default off) or ``--no-name`` (default on); ``tuple[float, float]``
fields take two values; ``X | None`` fields take an ``X`` and default to ``None`` (the help says
what omitting them means).

Settings dataclasses live beside the code that uses them and import torch; :func:`add_options_lazily`
adds their options when the subcommand is used, so that ``dfrobust --help`` stays quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any


def _base_type(annotation: Any) -> tuple[Any, int | None]:
    """``(element type, nargs)`` of a field annotation: ``int``/``float``/``str``/``bool``, tuples as nargs."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is tuple:
        args = typing.get_args(annotation)
        return args[0], len(args)
    return annotation, None


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def flag(name: str) -> str:
    """The option of field ``name``: ``--name-with-dashes``."""
    return "--" + name.replace("_", "-")


def add_dataclass_options(parser: argparse.ArgumentParser | Any, cls: type, inherited_from: str = "", skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of dataclass ``cls`` to ``parser`` (a parser or an argument group).

    ``inherited_from`` names what ``inherit`` fields fall back to (e.g. ``--resume-from``);
    ``skip`` lists fields the command handles itself.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} has no metadata help text")
        help_text = meta["help"].replace("%", "%%")
        default = f.default
        kind, nargs = _base_type(hints[f.name])
        if kind is bool:
            if default:
                parser.add_argument(
                    "--no-" + f.name.replace("_", "-"),
                    dest=f.name,
                    action="store_false",
                    default=True,
                    help=f"turn off {help_text} (on by default)",
                )
            else:
                parser.add_argument(flag(f.name), dest=f.name, action="store_true", default=False, help=f"{help_text} (off by default)")
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "type": kind, "default": default}
        if nargs is not None:
            kwargs["nargs"] = nargs
        if "choices" in meta:
            kwargs["choices"] = list(meta["choices"])
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if meta.get("inherit"):
            kwargs["default"] = None
            suffix = f" (default: {_default_text(default)}" + (f", or that of {inherited_from})" if inherited_from else ")")
        elif default is None:
            suffix = ""
        else:
            suffix = f" (default: {_default_text(default)})"
        parser.add_argument(flag(f.name), help=help_text + suffix, **kwargs)


def dataclass_kwargs(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cls`` from parsed ``args`` (tuples for pairs; ``inherit`` fields as given, maybe ``None``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        value = getattr(args, f.name)
        if value is not None and _base_type(hints[f.name])[1] is not None:
            value = tuple(value)
        out[f.name] = value
    return out


class _LazyOptions:
    """Mixin of a subcommand parser that adds its pending options before it parses or prints help."""

    _pending: list[Callable[[argparse.ArgumentParser], None]]

    def _add_pending(self) -> None:
        while self._pending:
            self._pending.pop(0)(self)  # type: ignore[arg-type]

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_pending()
        return super().parse_known_args(args, namespace)  # type: ignore[misc]

    def format_help(self) -> str:
        self._add_pending()
        return super().format_help()  # type: ignore[misc]

    def format_usage(self) -> str:
        self._add_pending()
        return super().format_usage()  # type: ignore[misc]


def add_options_lazily(parser: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]) -> None:
    """Call ``add(parser)`` when ``parser`` first parses or formats its help, not now.

    Building a subcommand's options from its settings dataclass imports that dataclass's module
    (and torch); deferring it keeps ``dfrobust --help`` and the other subcommands quick.
    """
    if not isinstance(parser, _LazyOptions):
        parser.__class__ = type(f"Lazy{type(parser).__name__}", (_LazyOptions, type(parser)), {})
        parser._pending = []  # type: ignore[attr-defined]
    parser._pending.append(add)  # type: ignore[attr-defined]
