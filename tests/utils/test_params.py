"""The constraint vocabulary (utils/params.py) and the plug-in base that checks constructor arguments with it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from dfrobust.errors import DfrobustError
from dfrobust.utils.params import Boolean, Budget, Interval, Pair, StrOptions, check_params, param_problem
from dfrobust.utils.plugins import Plugin, constructor_defaults, declared_params


def test_constraints_say_what_is_wrong_and_accept_what_is_right() -> None:
    assert Interval(1, integer=True)(0) == "needs a whole number >= 1"
    assert Interval(1, 100, integer=True)(101) == "needs a whole number >= 1 and <= 100"
    assert Interval(1, integer=True)(True) and Interval(1, integer=True)(2.0)  # a bool or a float is no whole number
    assert Interval(1, integer=True)(np.int64(3)) is None
    assert Interval(0, 1, lo_open=True)(0.0) == "needs a finite number in (0, 1]"
    assert Interval(0, 1, hi_open=True)(1.0) == "needs a finite number in [0, 1)"
    assert Interval()(float("nan")) == "needs a finite number" and Interval()(-3) is None
    assert Interval(0, 1)(np.float32(0.5)) is None and Interval(0, 1)(torch.tensor(0.5)) is None
    assert Interval(0, optional=True)(None) is None and Interval(0)(None)
    assert StrOptions("a", "b")("c") == "must be one of 'a', 'b'" and StrOptions("a", "b")("a") is None
    assert Boolean()(1) == "must be true or false" and Boolean()(False) is None
    assert Pair(0.0, lo_open=True)([0.0, 1.0]) and Pair(0.0, lo_open=True)((1, 2)) is None and Pair(0.0)([2, 1])
    assert Budget()(2.0).startswith("is more than 1") and Budget("l2")(2.0) is None and Budget()(-0.1)


def test_a_budget_reads_its_norm_from_the_other_parameters() -> None:
    eps = Budget(norm_param="norm", optional=True)
    assert param_problem(eps, 2.0, {"norm": "l2"}) is None
    assert param_problem(eps, 2.0, {"norm": "linf"}).startswith("is more than 1")
    assert param_problem(eps, None, {"norm": "linf"}) is None


def test_check_params_is_one_line_naming_the_owner_the_key_and_its_flag() -> None:
    with pytest.raises(DfrobustError) as err:
        check_params("cw", {"c_range": Pair(0.0, lo_open=True)}, {"c_range": (5.0, 1.0)})
    assert str(err.value) == "cw: c_range (--c-range) = (5.0, 1.0) needs two numbers [LO, HI] with 0 < LO <= HI"
    check_params("cw", {"c_range": Pair(0.0, lo_open=True)}, {})  # an absent key is not checked


class _Base(Plugin):
    name = "base"


class _Knob(_Base):
    """A plug-in with declared constraints."""

    name = "knob"
    params = {"steps": Interval(1, integer=True), "mode": StrOptions("a", "b"), "unused": Interval(0)}

    def __init__(self, steps: int = 3, mode: str = "a", seed: int = 0) -> None:
        self.steps, self.mode, self.seed = steps, mode, seed


class _Child(_Knob):
    name = "child"

    def __init__(self, steps: int = 0, mode: str = "b") -> None:  # a bad default is caught too
        super().__init__(steps=steps, mode=mode)


class _Free(_Base):
    name = "free"

    def __init__(self, anything: object = None) -> None:
        self.anything = anything


def test_the_plugin_base_checks_every_constructor_call_and_keeps_the_signature() -> None:
    assert _Knob(steps=5).steps == 5 and _Knob(2, "b").mode == "b"
    with pytest.raises(DfrobustError, match=r"^knob: steps \(--steps\) = 0 needs a whole number >= 1$"):
        _Knob(steps=0)
    with pytest.raises(DfrobustError, match=r"^knob: mode \(--mode\) = 'c' must be one of 'a', 'b'$"):
        _Knob(mode="c")
    with pytest.raises(DfrobustError, match=r"^child: steps"):
        _Child()
    assert _Child(steps=2).mode == "b"
    with pytest.raises(TypeError):  # a wrong call keeps Python's own error
        _Knob(nope=1)
    assert list(inspect.signature(_Knob.__init__).parameters) == ["self", "steps", "mode", "seed"]
    assert constructor_defaults(_Knob) == {"steps": 3, "mode": "a", "seed": 0}
    assert set(declared_params(_Knob)) == {"steps", "mode"}  # "unused" is no parameter of the constructor
    assert _Free(anything=object()).anything is not None  # a plug-in that declares nothing is not checked
