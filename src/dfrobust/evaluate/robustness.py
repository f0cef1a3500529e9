"""Verdicts from per-image attack rows: robust accuracy at a threat model, and minimal perturbations.

Two questions, kept apart (Carlini et al. 2019; Croce & Hein 2020):

* **Robust accuracy at a threat model** (:func:`robust_accuracy`): AutoAttack's definition. An
  image counts as correct only if the detector classifies it correctly clean *and* after every
  bounded attack of the suite whose norm and radius are the threat model's. Attacks without a
  bound (CW-L2 with its search of ``c``, FMN) or at another radius never enter: an unbounded
  attack reaches 0% on any detector and would rank them all equal.
* **Minimal perturbations** (:func:`minimal_perturbation`): per unbounded attack, the
  distribution of the smallest L2/Linf that flipped each image, and the accuracy-vs-radius
  curve it implies.

The functions are pure: they take ``results.csv`` rows as dicts (numbers or the strings
:func:`dfrobust.utils.io.read_csv` gives back), columns ``image, label, attack, source, target,
setting, clean_pred, adv_pred, l2, linf``; a row may carry ``norm`` and ``eps``, otherwise the
attack's budget comes from ``budgets`` (label -> ``(norm, eps)`` or ``None`` for unbounded), which
:func:`attack_budget` derives from an attack's settings. The masking checks over the same rows
are in :mod:`dfrobust.evaluate.masking`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from dfrobust.config_checks import budget
from dfrobust.constants import PAPER_EPS
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval

Row = Mapping[str, Any]
Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = get_args(Norm)
#: A bounded attack's budget ``(norm, eps)``; ``None`` for an unbounded (minimal-norm) attack.
Budget = tuple[str, float] | None


@dataclass(frozen=True)
class ThreatModel:
    """The norm ball robust numbers are for.

    Attributes:
        norm: ``linf`` or ``l2``.
        eps: the radius (the paper's FGSM budget: Linf 0.02, about 5/255).
        l2_radii: the L2 radii at which curves and minimal-perturbation summaries are read.
    """

    norm: Norm = "linf"
    eps: float = PAPER_EPS
    l2_radii: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise DfrobustError(f"threat model norm must be one of {NORMS}, got {self.norm!r}")
        if (problem := budget(self.norm)(self.eps)) or self.eps == 0:
            raise DfrobustError(f"threat model eps = {self.eps!r} {problem or 'needs a number > 0'}")
        radii = tuple(float(r) for r in self.l2_radii)
        if any(not 0 < r < math.inf for r in radii) or list(radii) != sorted(set(radii)):
            raise DfrobustError(f"threat model l2_radii must be finite, > 0 and increasing, got {list(self.l2_radii)}")
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "l2_radii", radii)

    def matches(self, budget: Budget) -> bool:
        """Whether an attack with ``budget`` is bounded at this threat model's norm and radius."""
        if budget is None:
            return False
        norm, eps = budget
        return norm == self.norm and math.isclose(float(eps), self.eps, rel_tol=1e-6, abs_tol=1e-12)

    def record(self) -> dict[str, Any]:
        """JSON-serialisable form (for results.json and the report header)."""
        return {"norm": self.norm, "eps": self.eps, "l2_radii": list(self.l2_radii)}


def attack_budget(settings: Mapping[str, Any]) -> Budget:
    """``(norm, eps)`` of an attack from its settings (``Attack.settings``), or ``None`` when unbounded.

    An attack with a finite ``eps`` is bounded in its ``norm`` (Linf when it has no ``norm``
    parameter: FGSM, MI-FGSM); one without ``eps`` (CW, FMN) is a minimal-norm attack.

    >>> attack_budget({"attack": "fgsm", "eps": 0.02}), attack_budget({"attack": "cw", "kappa": 200.0})
    (('linf', 0.02), None)
    """
    eps = settings.get("eps")
    if eps is None or not math.isfinite(float(eps)):
        return None
    return str(settings.get("norm", "linf")), float(eps)


def _i(v: Any) -> int:
    return int(float(v))


def row_budget(row: Row, budgets: Mapping[str, Budget] | None) -> Budget:
    """A row's attack budget: its own ``norm``/``eps`` columns (an empty ``eps``: unbounded), else ``budgets[row["attack"]]``."""
    if "eps" in row:
        if row["eps"] in (None, ""):
            return None
        return attack_budget({"eps": row["eps"], "norm": row.get("norm") or "linf"})
    if budgets is not None and row["attack"] in budgets:
        return budgets[row["attack"]]
    raise DfrobustError(f"no budget known for attack {row['attack']!r}: give its rows `norm`/`eps` or pass budgets")


def attack_key(row: Row) -> str:
    """The attack a row belongs to: its label, with ``@source`` for a transfer (blackbox) attack."""
    return f"{row['attack']}@{row['source']}" if row.get("setting") == "blackbox" else str(row["attack"])


@dataclass
class RobustAccuracy:
    """Robust accuracy of one detector at one threat model (AutoAttack's definition).

    Attributes:
        target: the detector.
        threat_model: :meth:`ThreatModel.record`.
        accuracy: ``k / n`` (``None`` when no bounded attack of the threat model ran).
        k: images correct clean and surviving every attack of the suite.
        n: images the verdict covers (see :func:`robust_accuracy`).
        interval: Wilson 95% interval of ``accuracy``.
        clean_accuracy: accuracy on the same ``n`` images before any attack.
        attacks: the suite: attack keys (:func:`attack_key`) at the threat model.
        survivors: per attack of the suite, the ``n`` images it left correct.
        left_out: attacks whose rows did not enter (unbounded or another norm/radius), by key.
        undecided: images seen by some attack of the suite that cannot be judged (see ``cascade``).
    """

    target: str
    threat_model: dict[str, Any]
    accuracy: float | None
    k: int
    n: int
    interval: tuple[float, float]
    clean_accuracy: float | None
    attacks: list[str] = field(default_factory=list)
    survivors: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    undecided: int = 0

    def record(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN interval ends become ``None``)."""
        out = asdict(self)
        out["interval"] = [None if math.isnan(v) else v for v in self.interval]
        return out


def _skipped(row: Row) -> bool:
    """A survivors-only attack's row of an image it did not attack (``skipped``: ``fooled by <earlier attack>``)."""
    return row.get("skipped") not in (None, "")


def _targets(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(str(r["target"]), []).append(r)
    return out


def robust_accuracy(
    rows: Iterable[Row],
    threat_model: ThreatModel,
    budgets: Mapping[str, Budget] | None = None,
    cascade: bool = False,
) -> RobustAccuracy:
    """Robust accuracy of one detector: correct clean and after every bounded attack at ``threat_model``.

    ``rows`` are one target's result rows (every attack, whitebox and transfer). Which images
    the verdict covers depends on how the suite ran:

    * ``cascade=False`` (each attack on its own, possibly seeded, subset): the images every attack
      of the suite saw, so that an attack run on fewer images (Square) cannot leave unattacked
      survivors counted as robust. A survivors-only attack (AutoAttack's chain,
      :mod:`dfrobust.studies.attack_survivors`) "sees" an image it skipped because an earlier attack
      fooled it: its row says so (``skipped``) and counts as fooled; an image beyond its own
      ``max_images`` has no row and is left out;
    * ``cascade=True`` (AutoAttack: later attacks run only on earlier survivors): every image some
      attack saw; one that a later attack never saw must have been broken already, else it is
      ``undecided`` and left out.

    Raises a :class:`~dfrobust.errors.DfrobustError` when the rows hold several targets.
    """
    rows = list(rows)
    targets = _targets(rows)
    if len(targets) > 1:
        raise DfrobustError(f"robust_accuracy takes one detector's rows, got {len(targets)}: {sorted(targets)}")
    target = next(iter(targets), "")
    suite: dict[str, dict[str, Row]] = {}
    left_out: set[str] = set()
    for r in rows:
        key = attack_key(r)
        if threat_model.matches(row_budget(r, budgets)):
            suite.setdefault(key, {})[str(r["image"])] = r
        else:
            left_out.add(key)
    if not suite:
        nan = (math.nan, math.nan)
        return RobustAccuracy(target, threat_model.record(), None, 0, 0, nan, None, left_out=sorted(left_out))

    def correct_clean(image: str) -> bool:
        r = next(s[image] for s in suite.values() if image in s)
        return _i(r["clean_pred"]) == _i(r["label"])

    def survives(key: str, image: str) -> bool:
        r = suite[key][image]
        # a row skipped by a survivors-only attack: an earlier attack of its chain already fooled the image
        return not _skipped(r) and _i(r["adv_pred"]) == _i(r["label"])

    seen = set().union(*(s.keys() for s in suite.values()))
    everywhere = set.intersection(*(set(s) for s in suite.values()))
    if cascade:
        broken = {i for i in seen if not correct_clean(i) or any(i in s and not survives(k, i) for k, s in suite.items())}
        images = everywhere | broken
    else:
        images = everywhere
    undecided = len(seen - images)
    robust = [i for i in images if correct_clean(i) and all(survives(k, i) for k in suite if i in suite[k])]
    n, k = len(images), len(robust)
    survivors = {key: sum(1 for i in images if correct_clean(i) and (i not in s or survives(key, i))) for key, s in suite.items()}
    clean = sum(1 for i in images if correct_clean(i))
    return RobustAccuracy(
        target=target,
        threat_model=threat_model.record(),
        accuracy=k / n if n else None,
        k=k,
        n=n,
        interval=wilson_interval(k, n),
        clean_accuracy=clean / n if n else None,
        attacks=sorted(suite),
        survivors=dict(sorted(survivors.items())),
        left_out=sorted(left_out),
        undecided=undecided,
    )


def robust_accuracy_by_target(
    rows: Iterable[Row], threat_model: ThreatModel, budgets: Mapping[str, Budget] | None = None, cascade: bool = False
) -> dict[str, RobustAccuracy]:
    """:func:`robust_accuracy` of every target in ``rows``, by target name."""
    return {t: robust_accuracy(rs, threat_model, budgets, cascade) for t, rs in sorted(_targets(rows).items())}


def accuracy_at_radii(norms: Sequence[float], radii: Sequence[float]) -> list[dict[str, float]]:
    """Accuracy at each radius r: the share of images whose minimal norm exceeds r.

    ``norms`` holds one minimal norm per image: 0 for an image misclassified clean, ``inf`` for one
    no attack flipped.

    >>> accuracy_at_radii([0.0, 0.5, 1.0, math.inf], [0.25, 0.75])
    [{'radius': 0.25, 'accuracy': 0.75}, {'radius': 0.75, 'accuracy': 0.5}]
    """
    arr = np.asarray(norms, dtype=float)
    return [{"radius": float(r), "accuracy": float((arr > r).mean()) if len(arr) else math.nan} for r in radii]


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """Q1, median, Q3, linearly interpolated; a quartile that reaches into the failures (``inf``) is ``inf``."""
    if not len(values):
        return math.nan, math.nan, math.nan
    v = np.sort(values)
    out = []
    for q in (0.25, 0.5, 0.75):
        pos = q * (len(v) - 1)
        lo, hi, frac = math.floor(pos), math.ceil(pos), pos - math.floor(pos)
        # numpy would compute 0.4 + frac * (inf - 0.4) or inf - inf: decide inf by hand
        if math.isinf(v[lo]) or (frac > 0 and math.isinf(v[hi])):
            out.append(math.inf)
        else:
            out.append(float(v[lo] + frac * (v[hi] - v[lo])))
    return out[0], out[1], out[2]


def minimal_perturbation(
    rows: Iterable[Row],
    budgets: Mapping[str, Budget] | None = None,
    radii: Mapping[str, Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """Per detector and unbounded attack: the smallest L2 and Linf that flipped each image.

    For each (target, attack key) with no budget (``budgets`` given: attacks mapped to ``None``;
    not given: every row's attack is taken as minimal-norm), over the ``n`` images the target
    classified correctly clean: ``n_success`` flipped, and Q1/median/Q3 of their L2 and Linf
    with failures counted as ``inf`` (so a median is finite only when most images flipped).
    ``curve_l2``/``curve_linf``: :func:`accuracy_at_radii` over *all* images of the group
    (misclassified clean at norm 0, failures at ``inf``), at ``radii["l2"]``/``radii["linf"]``
    (default: 0 and the observed finite norms).
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        if budgets is not None and row_budget(r, budgets) is not None:
            continue
        groups.setdefault((str(r["target"]), attack_key(r)), []).append(r)
    out = []
    for (target, attack), rs in sorted(groups.items()):
        entry: dict[str, Any] = {"target": target, "attack": attack, "n_images": len(rs)}
        correct = [r for r in rs if _i(r["clean_pred"]) == _i(r["label"])]
        flipped = [_i(r["adv_pred"]) != _i(r["label"]) for r in correct]
        entry["n"] = len(correct)
        entry["n_success"] = sum(flipped)
        for norm in ("l2", "linf"):
            mins = np.array([float(r[norm]) if f else math.inf for r, f in zip(correct, flipped)])
            entry[f"q1_{norm}"], entry[f"median_{norm}"], entry[f"q3_{norm}"] = _quartiles(mins)
            every = np.concatenate([np.zeros(len(rs) - len(correct)), mins])
            grid = (radii or {}).get(norm)
            if grid is None:
                grid = [0.0, *sorted({float(v) for v in mins if math.isfinite(v)})]
            entry[f"curve_{norm}"] = accuracy_at_radii(every, grid)
        out.append(entry)
    return out
