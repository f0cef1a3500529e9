"""Checks of a whole study config (a preset plus ``--set`` overrides) before the first stage runs.

:func:`validate_study_config` looks at keys, types and ranges only, so that a value that could
never work (``dip.classify_at`` after the last DIP iteration, a one-number ``attack.cw.c_range``,
a negative learning rate) is a one-line error that names the key, instead of a traceback after
an hour of finished stages. It knows nothing of the modules that use the values (a ground
module); those still check what only they can (an unknown training field, an attack name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dfrobust.constants import MAX_IMAGE_SIDE
from dfrobust.errors import DfrobustError
from dfrobust.utils.names import name_problem
from dfrobust.utils.numerics import ISA_LEVELS

from dfrobust.utils.params import Boolean, Budget, Check, Interval, Pair, StrOptions, is_int, is_num, param_problem

_is_int, _is_num = is_int, is_num


def integer(lo: int, hi: int | None = None) -> Check:
    """A whole number in ``[lo, hi]``."""
    return Interval(lo, hi, integer=True)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Check:
    """A finite number in the interval given (``lo_open``/``hi_open`` exclude the ends)."""
    return Interval(lo, hi, lo_open=lo_open, hi_open=hi_open)


def budget(norm: str = "linf") -> Check:
    """An attack's budget (``eps``): see :class:`~dfrobust.utils.params.Budget`, the one rule behind every budget."""
    return Budget(norm)


def choice(*values: Any) -> Check:
    """One of the strings ``values``."""
    return StrOptions(*values)


boolean: Check = Boolean()


def text(v: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(v, str) and v else "must be a non-empty string"


def pair(lo_min: float, lo_open: bool = False) -> Check:
    """Two numbers ``[LO, HI]`` with ``lo_min <= LO <= HI`` (``lo_min < LO`` when ``lo_open``)."""
    return Pair(lo_min, lo_open)


def number_list(lo: float = 0.0) -> Check:
    """A non-empty list of distinct finite numbers >= ``lo``."""

    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) > 0 and all(_is_num(x) and x >= lo for x in v) and len(set(v)) == len(v)
        return None if ok else f"needs a non-empty list of distinct numbers >= {lo:g}"

    return check


def seed_list(v: Any) -> str | None:
    """A list of distinct non-negative whole numbers, possibly empty (``run.seeds``)."""
    ok = isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v) and len(set(v)) == len(v)
    return None if ok else "needs a list of distinct non-negative integers ([] for one run at run.seed)"


def name(v: Any) -> str | None:
    """One name that may become a folder (no separators, no ``..``: see :mod:`dfrobust.utils.names`)."""
    problem = name_problem(v)
    return f"{problem} (a name)" if problem else None


def name_list(v: Any) -> str | None:
    """A non-empty list of distinct names, each safe as a folder name (they become ``RUN/<stage>/<name>``)."""
    ok = isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v)
    if not ok:
        return "needs a non-empty list of distinct names"
    bad = next((x for x in v if name_problem(x)), None)
    return None if bad is None else f"holds {bad!r}, which {name_problem(bad)}"


def optional_name_list(v: Any) -> str | None:
    """A list of distinct names, possibly empty (``[]`` turns the feature off)."""
    if v == []:
        return None
    problem = name_list(v)
    return problem if problem is None or problem.startswith("holds") else "needs a list of distinct names (or [])"


#: Settings of one detector's training (the ``[train]`` section and its per-role sections).
TRAIN_KEYS: dict[str, Check] = {
    "arch": text,
    "epochs": integer(1),
    "patience": integer(0),
    "optimizer": choice("sgd", "adam"),
    "lr": number(0, lo_open=True),
    "momentum": number(0, 1, hi_open=True),
    "weight_decay": number(0),
    "batch_size": integer(2),
    "eval_batch_size": integer(1),
    "normalization": choice("none", "imagenet", "inception"),
    "activation": choice("relu", "halfhuber"),
    "hflip": boolean,
    "blur_fraction": number(0, 1),
    "lipschitz": number(0),
    "lipschitz_estimator": choice("exact", "rademacher"),
    "lipschitz_batchnorm": choice("batch", "eval"),
    "val_fraction": number(0, 1, hi_open=True),
    "amp": boolean,
}

#: Settings an ``[adaptive.<purifier>]`` table may override for that purifier's adaptive attack.
ADAPTIVE_KEYS: dict[str, Check] = {
    "steps": integer(1),
    "eot": integer(1),
    "bpda": name,
    "segment": integer(0),
    "eval_draws": integer(1),
    "attack_iterations": integer(0),
    "nonadaptive": boolean,
    "max_images": integer(0),
    "natural": integer(0),
    "sanity_images": integer(0),
    "batch_size": integer(1),
}

#: Keys an ``[attack.NAME]`` section may hold beside its attack's parameters (the attack stage reads them).
#: ``survivors_of``: earlier attacks of the list (AutoAttack's chain) whose survivors alone this attack attacks, per source.
ATTACK_STAGE_KEYS: dict[str, Check] = {"max_images": integer(0), "survivors_of": optional_name_list}

#: A plug-in's config section: ``{section: (parameter -> constraint, parameter -> default)}``, from the plug-in
#: classes (``attacks.base.attack_param_checks``); the caller passes it, as this module knows no plug-in.
PluginSections = Mapping[str, tuple[Mapping[str, Check], Mapping[str, Any]]]

#: Every checked key; ``True`` = the study cannot run without it. An attack's parameters are not
#: listed: each attack declares their constraints (``params``) and the caller passes them in.
SCHEMA: dict[str, tuple[Check, bool]] = {
    "run.seed": (integer(0), True),
    "run.seeds": (seed_list, False),  # two or more: `reproduce` runs the study once per seed, as --seeds does
    "run.pin_isa": (choice("none", *ISA_LEVELS), False),  # utils/numerics.py: pinned before any torch work
    "data.n": (integer(4), True),
    "data.size": (integer(8, MAX_IMAGE_SIDE), True),  # larger would only exhaust memory once the data stage starts
    "data.test_fraction": (number(0, 1, lo_open=True, hi_open=True), True),
    "train.lipschitz.lambdas": (number_list(0.0), True),
    "train.lipschitz.start": (choice("resnet18", "scratch"), True),
    "train.lipschitz.epochs": (integer(1), True),
    "train.blur.epochs": (integer(1), True),
    "train.blur.fraction": (number(0, 1), True),
    "train.blur.sigma": (pair(0.0), True),
    "attack.attacks": (name_list, True),
    "attack.max_images": (integer(0), True),
    "attack.transfer_only": (optional_name_list, False),
    "attack.batch_size": (integer(1), True),
    "attack.ensemble": (optional_name_list, False),
    "dip.per_category": (integer(1), True),
    "dip.iterations": (integer(1), True),
    "dip.classify_at": (integer(1), True),
    "dip.record_every": (integer(1), True),
    "dip.batch_size": (integer(1), True),
    "dip.stop_at": (integer(0), False),
    "dip.purifiers": (optional_name_list, False),
    "dip.attacks": (optional_name_list, False),
    "dip.early_stop": (boolean, False),
    "dip.es_window": (integer(2), False),
    "dip.es_patience": (integer(1), False),
    "train.hardened.roles": (optional_name_list, False),
    "train.hardened.epochs": (integer(1), False),
    "train.hardened.eps": (number(0, 1), False),
    "train.hardened.steps": (integer(1), False),
    "train.hardened.max_clean_drop": (number(0, 1), False),
    "train.hardened.calibrate": (boolean, False),
    "platform.attacks": (optional_name_list, False),
    "platform.robust_to": (text, False),
    "platform.heldout": (text, False),
    "platform.eot": (integer(1), False),
    "platform.max_images": (integer(0), False),
    "threat_model.norm": (choice("linf", "l2"), False),
    "threat_model.eps": (number(0, lo_open=True), False),
    "threat_model.l2_radii": (number_list(0.0), False),
    "adaptive.purifiers": (optional_name_list, False),
    "adaptive.attack": (name, False),
    "adaptive.steps": (integer(1), False),
    "adaptive.eot": (integer(1), False),
    "adaptive.bpda": (name, False),
    "adaptive.eval_draws": (integer(1), False),
    "adaptive.dip_attack_iterations": (integer(0), False),
    "adaptive.segment": (integer(0), False),
    "adaptive.natural": (integer(0), False),
    "adaptive.sanity_images": (integer(0), False),
    "adaptive.nonadaptive": (boolean, False),
    "adaptive.max_images": (integer(0), False),
    "adaptive.batch_size": (integer(1), False),
    "robustness.steps": (integer(1), False),
    "robustness.max_images": (integer(0), False),
    "robustness.batch_size": (integer(1), False),
    "certify.n0": (integer(1), False),
    "certify.n": (integer(1), False),
    "certify.alpha": (number(0, 1, lo_open=True, hi_open=True), False),
    "certify.max_images": (integer(0), False),
}


def _get(cfg: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _fail(key: str, value: Any, problem: str) -> DfrobustError:
    return DfrobustError(f"config {key} = {value!r} {problem}; change it with --set {key}=...")


def validate_study_config(cfg: dict[str, Any], plugins: PluginSections | None = None) -> None:
    """Raise a one-line :class:`DfrobustError` for the first key of ``cfg`` whose value cannot work.

    Checks every key of :data:`SCHEMA` (required ones must be present), the per-role training
    sections (``train.vgg16``, ``train.resnet18``) with the ``[train]`` rules, the numeric
    knobs of ``data.swap``, and the DIP iterations against each other (``classify_at`` and
    ``record_every`` within the iterations run, ``stop_at`` not before ``classify_at``). ``plugins``
    holds the plug-ins' declared constraints by config section (``attack.cw`` -> CW's ``params`` and defaults):
    each value a section sets is checked by its parameter's constraint, the rest of the section (or the
    default) standing for the other parameters a constraint reads (PGD's eps by its norm).
    """
    if not isinstance(cfg, dict):
        raise DfrobustError("a study config is a table of sections (run, data, train, attack, dip)")
    for key, (check, required) in SCHEMA.items():
        present, value = _get(cfg, key)
        if not present:
            if required:
                raise DfrobustError(f'config lacks {key}; add it to the preset (or start the preset with extends = "paper")')
            continue
        problem = check(value)
        if problem:
            raise _fail(key, value, problem)
    seeds = cfg["run"].get("seeds") or []
    if len(seeds) == 1 and seeds[0] != cfg["run"]["seed"]:  # one seed is one ordinary run, and that run's seed is run.seed
        raise _fail("run.seeds", seeds, f"names one seed other than run.seed = {cfg['run']['seed']}; for one run set run.seed")
    for prefix, (checks, defaults) in (plugins or {}).items():
        present, section = _get(cfg, prefix)
        if present and isinstance(section, dict):
            merged = {**defaults, **section}
            for k, check in {**ATTACK_STAGE_KEYS, **checks}.items():
                if k in section and (problem := param_problem(check, section[k], merged)):
                    raise _fail(f"{prefix}.{k}", section[k], problem)
    train = cfg.get("train", {})
    sections = {"train": train} | {
        f"train.{role}": v for role, v in train.items() if isinstance(v, dict) and role not in ("lipschitz", "blur")
    }
    for prefix, section in sections.items():
        for k, check in TRAIN_KEYS.items():
            # [train] holds the common settings and the sections; a section is checked on its own
            if k in section and not isinstance(section[k], dict) and (problem := check(section[k])):
                raise _fail(f"{prefix}.{k}", section[k], problem)
    for purifier, section in (cfg.get("adaptive") or {}).items():
        if isinstance(section, dict):
            for k, v in section.items():
                if k not in ADAPTIVE_KEYS:
                    raise _fail(f"adaptive.{purifier}.{k}", v, f"is not a setting of an adaptive attack ({', '.join(ADAPTIVE_KEYS)})")
                if problem := ADAPTIVE_KEYS[k](v):
                    raise _fail(f"adaptive.{purifier}.{k}", v, problem)
    for k, v in (cfg.get("data", {}).get("swap") or {}).items():
        if not _is_num(v):
            raise _fail(f"data.swap.{k}", v, "needs a finite number")
    dip = cfg["dip"]
    levels = dip.get("levels", 5)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 5:
        raise _fail("dip.levels", levels, "needs a whole number of levels from 1 to 5 (the paper's generator has 5)")
    stop = dip.get("stop_at") or 0
    end = min(dip["iterations"], stop) if stop else dip["iterations"]
    if dip["classify_at"] > end:
        last = f"the last DIP iteration run ({end}: dip.{'stop_at' if stop and stop < dip['iterations'] else 'iterations'})"
        raise _fail("dip.classify_at", dip["classify_at"], f"lies after {last}; choose at most {end}")
    if dip["record_every"] > end:
        raise _fail("dip.record_every", dip["record_every"], f"is more than the {end} iterations run; nothing would be recorded")
