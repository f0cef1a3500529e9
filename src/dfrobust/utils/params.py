"""Parameter constraints, declared once beside each parameter (scikit-learn's ``Interval``/``StrOptions`` habit).

A plug-in declares ``params = {"eps": Budget(), "steps": Interval(1, integer=True), "loss": StrOptions("ce", "dlr")}``
on its class; :func:`param_problem` and :func:`check_params` are the one check that its constructor
(through the plug-in base), ``dfrobust attack``'s flags, ``--set`` and the study config's validation
all run, so each rule and its message are written once. A constraint is a callable
``value -> problem | None``: the problem completes a sentence that names the key (``needs a whole
number >= 1``), so each caller puts its own subject and remedy around it. A constraint that depends
on another parameter (a budget's norm) reads it through :meth:`Constraint.resolve`.

This module is a leaf (standard library and :mod:`dfrobust.errors` only).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from dfrobust.errors import DfrobustError

Check = Callable[[Any], "str | None"]  # the problem with a value, or None


def is_int(v: Any) -> bool:
    """A whole number that is not a bool (a NumPy integer counts)."""
    if isinstance(v, bool) or isinstance(v, (float, str)):
        return False
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def is_num(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def as_number(v: Any) -> Any:
    """A NumPy or 0-d tensor number as a float; anything else unchanged."""
    if isinstance(v, (bool, str, int, float)) or not hasattr(v, "__float__"):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


class Constraint:
    """What values a parameter may take; ``constraint(value)`` is the problem, or ``None``.

    Args:
        optional: ``None`` is allowed too (the parameter's default is computed from others).
    """

    optional: bool = False

    def problem(self, v: Any) -> str | None:  # pragma: no cover - every constraint overrides it
        raise NotImplementedError

    def __call__(self, v: Any) -> str | None:
        if v is None and self.optional:
            return None
        return self.problem(v)

    def resolve(self, params: Mapping[str, Any]) -> Constraint:
        """The constraint for these values of the other parameters (itself, unless it depends on them)."""
        return self


class Interval(Constraint):
    """A finite number in ``[lo, hi]`` (``None``: unbounded; ``lo_open``/``hi_open`` exclude the ends),
    a whole one with ``integer``."""

    def __init__(
        self,
        lo: float | None = None,
        hi: float | None = None,
        *,
        integer: bool = False,
        lo_open: bool = False,
        hi_open: bool = False,
        optional: bool = False,
    ) -> None:
        self.lo, self.hi, self.integer = lo, hi, integer
        self.lo_open, self.hi_open, self.optional = lo_open, hi_open, optional

    def problem(self, v: Any) -> str | None:
        lo, hi = self.lo, self.hi
        if self.integer:
            if not is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
                return f"needs a whole number >= {lo}" + (f" and <= {hi}" if hi is not None else "")
            return None
        v = as_number(v)
        bad = not is_num(v)
        bad = bad or (lo is not None and (v <= lo if self.lo_open else v < lo))
        bad = bad or (hi is not None and (v >= hi if self.hi_open else v > hi))
        if not bad:
            return None
        if lo is None and hi is None:
            return "needs a finite number"
        left = "-inf" if lo is None else f"{'(' if self.lo_open else '['}{lo:g}"
        right = "inf)" if hi is None else f"{hi:g}{')' if self.hi_open else ']'}"
        return f"needs a finite number in {left}, {right}"


class StrOptions(Constraint):
    """One of the strings given."""

    def __init__(self, *options: str, optional: bool = False) -> None:
        self.options, self.optional = options, optional

    def problem(self, v: Any) -> str | None:
        return None if isinstance(v, str) and v in self.options else f"must be one of {', '.join(map(repr, self.options))}"


class Boolean(Constraint):
    """``true`` or ``false``."""

    def problem(self, v: Any) -> str | None:
        return None if isinstance(v, bool) else "must be true or false"


class Pair(Constraint):
    """Two numbers ``[LO, HI]`` with ``lo_min <= LO <= HI`` (``lo_min < LO`` when ``lo_open``)."""

    def __init__(self, lo_min: float, lo_open: bool = False) -> None:
        self.lo_min, self.lo_open = lo_min, lo_open

    def problem(self, v: Any) -> str | None:
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(is_num(as_number(x)) for x in v)
        if ok:
            lo, hi = (as_number(x) for x in v)
            ok = (lo > self.lo_min if self.lo_open else lo >= self.lo_min) and lo <= hi
        return None if ok else f"needs two numbers [LO, HI] with {self.lo_min:g} {'<' if self.lo_open else '<='} LO <= HI"


class Budget(Constraint):
    """An attack's budget (``eps``): a finite number >= 0, and for ``linf`` at most 1.

    The one rule behind every budget dfrobust takes (the attacks, the threat model, the config):
    images are in ``[0, 1]``, so an Linf budget above 1 is one in 0-255 units by mistake (8 for
    8/255). An L2 budget is a distance over all pixels and may exceed 1. ``norm_param`` names the
    parameter that holds the norm (PGD's ``norm``); its value picks the rule.
    """

    def __init__(self, norm: str = "linf", *, norm_param: str | None = None, optional: bool = False) -> None:
        self.norm, self.norm_param, self.optional = norm, norm_param, optional

    def resolve(self, params: Mapping[str, Any]) -> Constraint:
        if self.norm_param is None or not isinstance(params.get(self.norm_param), str):
            return self
        return Budget(params[self.norm_param], optional=self.optional)

    def problem(self, v: Any) -> str | None:
        v = as_number(v)
        if not is_num(v) or v < 0:
            return "needs a finite number >= 0"
        if self.norm == "linf" and v > 1:
            return f"is more than 1, the whole [0, 1] pixel range: give it as a fraction of that range (eps={v:g}/255 = {v / 255:.4g})"
        return None


def param_problem(constraint: Check, value: Any, params: Mapping[str, Any] = {}) -> str | None:  # noqa: B006 - read only
    """The problem of ``value`` under ``constraint`` (resolved against the other ``params``), or ``None``."""
    if isinstance(constraint, Constraint):
        constraint = constraint.resolve(params)
    return constraint(value)


def flag(name: str) -> str:
    """The command-line flag of parameter ``name`` (``c_range`` -> ``--c-range``)."""
    return "--" + name.replace("_", "-")


def check_params(owner: str, constraints: Mapping[str, Check], params: Mapping[str, Any]) -> None:
    """Raise a one-line :class:`DfrobustError` for the first of ``params`` that breaks its constraint.

    The line names the owner, the parameter and its flag: ``pgd: steps (--steps) = 0 needs a whole number >= 1``.
    """
    for key, constraint in constraints.items():
        if key in params and (problem := param_problem(constraint, params[key], params)):
            raise DfrobustError(f"{owner}: {key} ({flag(key)}) = {params[key]!r} {problem}")
