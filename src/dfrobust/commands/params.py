"""Command-line flags derived from plug-in constructors (attacks, purifiers): nothing is listed by hand.

Each constructor parameter becomes one flag (``c_range`` -> ``--c-range``), typed from its
annotation, helped from the class docstring's ``Args:`` section, with the default read from
the signature. Several plug-ins sharing a parameter name share the flag; a flag given for a
plug-in that lacks the parameter is a one-line error naming the plug-ins that take it.

>>> flags = add_param_flags(parser, attack_classes(), kind="attack", skip=("seed",))  # doctest: +SKIP
>>> params = chosen_params(args, flags, "fgsm")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.utils.plugins import constructor_parameters, docstring_args, summary_line

log = logging.getLogger(__name__)


@dataclass
class FlagKind:
    """How argparse reads one parameter: ``type``, ``nargs``, ``choices``, or a boolean pair."""

    type: Callable[[str], Any] | None = None
    nargs: int | str | None = None
    choices: tuple[Any, ...] | None = None
    boolean: bool = False

    def convert(self, value: Any) -> Any:
        """A parsed value as the constructor takes it (lists become tuples)."""
        return tuple(value) if isinstance(value, list) else value


def _strip_optional(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def flag_kind(hint: Any, default: Any = None) -> FlagKind | None:
    """The argparse reading of a type hint; ``None`` when the CLI cannot express it."""
    hint = _strip_optional(hint)
    if hint is Any or hint is None:  # unannotated: infer from the default
        hint = type(default) if default is not None else str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return FlagKind(boolean=True)
    if hint in (int, float, str):
        return FlagKind(type=hint)
    if origin is typing.Literal and args and len({type(a) for a in args}) == 1 and type(args[0]) in (int, float, str):
        return FlagKind(type=type(args[0]), choices=tuple(args))
    if origin is tuple and args and all(a in (int, float, str) for a in args if a is not Ellipsis):
        if len(args) == 2 and args[1] is Ellipsis:
            return FlagKind(type=args[0], nargs="+")
        if len(set(args)) == 1:
            return FlagKind(type=args[0], nargs=len(args))
    return None


@dataclass
class ParamFlag:
    """One flag and the plug-ins that take its parameter."""

    dest: str
    kind: FlagKind
    owners: list[str] = field(default_factory=list)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


def and_list(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)


def plain_text(text: str) -> str:
    """Docstring text for a terminal: reST roles and literals (``x``, :func:`x`) shown as plain words."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "").replace("`", "")


def _format_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(_format_default(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help(dest: str, owners: Mapping[str, type]) -> str:
    """Docstring description(s) plus the signature default(s): ``... (default: 0.02 (fgsm, mifgsm), 0.03 (pgd))``."""
    texts: dict[str, list[str]] = {}
    defaults = []
    for name, cls in owners.items():
        text = plain_text(docstring_args(cls).get(dest, "")).rstrip(".")
        texts.setdefault(text, []).append(name)
        default = constructor_parameters(cls)[dest].default
        if default is not None and default is not constructor_parameters(cls)[dest].empty:
            defaults.append((name, _format_default(default)))
    if len(texts) == 1:
        desc = next(iter(texts))
    else:
        desc = "; ".join(f"{', '.join(names)}: {text}" for text, names in texts.items() if text)
    by_value: dict[str, list[str]] = {}
    for name, value in defaults:
        by_value.setdefault(value, []).append(name)
    if len(by_value) == 1 and len(defaults) == len(owners):
        default_text = f"default: {defaults[0][1]}"
    else:
        default_text = "default: " + ", ".join(f"{v} ({', '.join(n)})" for v, n in by_value.items()) if defaults else ""
    parts = [p for p in (desc, default_text) if p]
    return (f"{parts[0]} ({parts[1]})" if len(parts) == 2 else "".join(parts)).replace("%", "%%")


def add_param_flags(
    parser: argparse.ArgumentParser,
    classes: Mapping[str, type],
    kind: str,
    skip: Sequence[str] = (),
    reserved: Sequence[str] = ("command", "func"),
) -> dict[str, ParamFlag]:
    """Add one flag per constructor parameter of ``classes`` (name -> class) to ``parser``; returns them by dest.

    Flags are grouped by the plug-ins that take them. Every flag defaults to ``None`` (the
    plug-in's own default applies). A parameter the CLI cannot express (an unsupported
    annotation, a name clashing with another option or with a ``reserved`` destination of the
    top-level parser, types that differ between plug-ins) gets no flag and is logged; it stays
    settable from Python.
    """
    taken = {a.dest for a in parser._actions} | set(reserved)
    flags: dict[str, ParamFlag] = {}
    for owner, cls in classes.items():
        hints = typing.get_type_hints(cls.__init__)
        for dest, param in constructor_parameters(cls).items():
            if dest in skip:
                continue
            if dest in taken:
                log.warning("%s %s: parameter %r clashes with an option of the command; it gets no flag", kind, owner, dest)
                continue
            fk = flag_kind(hints.get(dest, Any), None if param.default is param.empty else param.default)
            if fk is None:
                log.info("%s %s: parameter %r has a type the command line cannot express; set it from Python", kind, owner, dest)
                continue
            if dest in flags and flags[dest].kind != fk:
                merged = flags[dest].kind
                if (merged.type, merged.nargs, merged.boolean) != (fk.type, fk.nargs, fk.boolean):
                    log.warning(
                        "%s %s: parameter %r differs in type from %s's; it gets no flag for %s",
                        kind,
                        owner,
                        dest,
                        flags[dest].owners,
                        owner,
                    )
                    continue
                # a value any owner accepts passes argparse; the chosen plug-in's constructor checks its own
                both = merged.choices is not None and fk.choices is not None
                merged.choices = tuple(dict.fromkeys([*merged.choices, *fk.choices])) if both else None
            flags.setdefault(dest, ParamFlag(dest, fk)).owners.append(owner)

    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    added: dict[str, ParamFlag] = {}
    for dest, pf in sorted(flags.items(), key=lambda kv: (len(kv[1].owners) == 1, kv[1].owners, kv[0])):
        owners = tuple(pf.owners)
        if owners not in groups:
            title = f"{kind} parameters: {and_list(owners)}"
            desc = plain_text(summary_line(classes[owners[0]])) if len(owners) == 1 else None
            groups[owners] = parser.add_argument_group(title, desc)
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": _help(dest, {o: classes[o] for o in owners})}
        if pf.kind.boolean:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=pf.kind.type)
            if pf.kind.nargs is not None:
                kwargs["nargs"] = pf.kind.nargs
            if pf.kind.choices:
                kwargs["choices"] = list(pf.kind.choices)
        try:
            groups[owners].add_argument(pf.flag, **kwargs)
        except argparse.ArgumentError:
            log.warning("%s parameter %r of %s clashes with another option of the command; it gets no flag", kind, dest, owners)
            continue
        added[dest] = pf
    return added


def chosen_params(args: argparse.Namespace, flags: Mapping[str, ParamFlag], chosen: str, kind: str = "attack") -> dict[str, Any]:
    """The parameters of plug-in ``chosen`` given on the command line; a flag of another plug-in is an error."""
    params: dict[str, Any] = {}
    for dest, pf in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if chosen not in pf.owners:
            raise DfrobustError(f"{pf.flag} is a parameter of {and_list(pf.owners)}, not of {kind} {chosen}; drop it")
        params[dest] = pf.kind.convert(value)
    return params


class _DeferredParser(argparse.ArgumentParser):
    """A parser that adds its heavy arguments the first time it parses or prints (see :func:`defer_arguments`)."""

    def _build_deferred(self) -> None:
        build = self.__dict__.pop("_deferred_build", None)
        if build is not None:
            build(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._build_deferred()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._build_deferred()
        return super().format_usage()

    def format_help(self) -> str:
        self._build_deferred()
        return super().format_help()


def defer_arguments(parser: argparse.ArgumentParser, build: Callable[[argparse.ArgumentParser], None]) -> None:
    """Call ``build(parser)`` only when this subcommand is used or its help is shown.

    Arguments read from a registry import every plug-in (and torch); deferring them keeps
    ``dfrobust --help`` and the other subcommands quick.
    """
    if type(parser) is argparse.ArgumentParser:
        parser.__class__ = _DeferredParser
    elif not isinstance(parser, _DeferredParser):
        raise TypeError(f"cannot defer the arguments of a {type(parser).__name__}")
    parser._deferred_build = build  # type: ignore[attr-defined]
