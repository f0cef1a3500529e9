"""Gradient-masking checks over per-image attack rows (Carlini et al. 2019, "On evaluating adversarial robustness").

A defense that masks gradients looks robust to the attacks it breaks, not robust. Each check
compares attacks that, on an honest defense, must come out in a known order, and returns a
:class:`MaskingCheck`: ``passed`` (``None`` when the rows hold nothing to compare) and a
one-line message. Rows are one target's ``results.csv`` rows, as in
:mod:`dfrobust.evaluate.robustness`.

* :func:`check_unbounded_reaches_all`: an attack without a radius flips every image;
* :func:`check_whitebox_vs_blackbox`: an attack that sees the model is no weaker than a transfer;
* :func:`check_gradient_free_vs_gradient`: a gradient-free attack (Square) is no stronger than a
  gradient attack (APGD) at the same radius.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dfrobust.evaluate.robustness import Budget, Row, ThreatModel, attack_key, robust_accuracy, row_budget


def _i(v: object) -> int:
    return int(float(v))  # type: ignore[arg-type]


@dataclass(frozen=True)
class MaskingCheck:
    """One check's verdict: ``passed`` is ``None`` when it could not be made."""

    name: str
    passed: bool | None
    message: str

    @property
    def flagged(self) -> bool:
        """Whether the check failed (a sign of gradient masking, to show in the leaderboard row)."""
        return self.passed is False


def check_unbounded_reaches_all(rows: Iterable[Row], budgets: Mapping[str, Budget] | None = None) -> MaskingCheck:
    """Every unbounded attack flips every image that was correctly classified clean."""
    name = "unbounded reaches 100%"
    by_attack: dict[str, list[Row]] = {}
    for r in rows:
        if row_budget(r, budgets) is None:
            by_attack.setdefault(attack_key(r), []).append(r)
    if not by_attack:
        return MaskingCheck(name, None, "no unbounded attack ran")
    short = []
    for key, rs in sorted(by_attack.items()):
        correct = [r for r in rs if _i(r["clean_pred"]) == _i(r["label"])]
        flipped = sum(_i(r["adv_pred"]) != _i(r["label"]) for r in correct)
        if flipped < len(correct):
            short.append(f"{key} flipped {flipped}/{len(correct)}")
    if short:
        return MaskingCheck(name, False, "unbounded attacks left images unflipped: " + "; ".join(short))
    return MaskingCheck(name, True, f"{', '.join(sorted(by_attack))} flipped every correctly classified image")


def _fmt(acc: float | None, k: int, n: int) -> str:
    return f"{acc:.1%} ({k}/{n})" if acc is not None else "n/a"


def _compare(
    name: str,
    strong_rows: Sequence[Row],
    weak_rows: Sequence[Row],
    threat_model: ThreatModel,
    budgets: Mapping[str, Budget] | None,
    strong: str,
    weak: str,
    tolerance: float,
) -> MaskingCheck:
    """Flag when the attacks that should be stronger leave more images correct, on the images both saw."""
    common = {str(r["image"]) for r in strong_rows} & {str(r["image"]) for r in weak_rows}
    a = robust_accuracy([r for r in strong_rows if str(r["image"]) in common], threat_model, budgets)
    b = robust_accuracy([r for r in weak_rows if str(r["image"]) in common], threat_model, budgets)
    if a.accuracy is None or b.accuracy is None:
        return MaskingCheck(name, None, f"no {strong if a.accuracy is None else weak} attack at {threat_model.norm} {threat_model.eps:g}")
    detail = f"{strong} {_fmt(a.accuracy, a.k, a.n)} vs {weak} {_fmt(b.accuracy, b.k, b.n)} robust accuracy"
    if a.accuracy > b.accuracy + tolerance:
        return MaskingCheck(name, False, f"{strong} weaker than {weak}: {detail}")
    return MaskingCheck(name, True, detail)


def check_whitebox_vs_blackbox(
    rows: Iterable[Row], threat_model: ThreatModel, budgets: Mapping[str, Budget] | None = None, tolerance: float = 0.0
) -> MaskingCheck:
    """Whitebox attacks at the threat model leave no more images correct than transfer (blackbox) ones.

    Both sides' robust accuracy is taken on the images both attacked; ``tolerance`` is the
    accuracy margin the whitebox side may exceed the blackbox side by before the check fails.
    """
    rows = list(rows)
    white = [r for r in rows if r.get("setting") != "blackbox"]
    black = [r for r in rows if r.get("setting") == "blackbox"]
    return _compare("whitebox >= blackbox", white, black, threat_model, budgets, "whitebox", "blackbox", tolerance)


def check_gradient_free_vs_gradient(
    rows: Iterable[Row],
    threat_model: ThreatModel,
    budgets: Mapping[str, Budget] | None = None,
    gradient_free: Sequence[str] = ("square",),
    gradient: Sequence[str] = ("apgd",),
    tolerance: float = 0.0,
) -> MaskingCheck:
    """A gradient-free attack (labels starting with ``gradient_free``) is no stronger than a gradient one.

    Whitebox rows only; both on the images both attacked. Square leaving fewer images correct
    than APGD means the gradients mislead APGD: masking.

    A survivors-only Square (AutoAttack's chain) never ran on the images APGD fooled: its skipped rows count
    here as images it left correct, the most it could have left, so the check fails only when Square is
    certainly stronger (it fooled more of APGD's survivors than APGD fooled images).
    """
    rows = [r for r in rows if r.get("setting") != "blackbox"]
    free = [_optimistic(r) for r in rows if str(r["attack"]).startswith(tuple(gradient_free))]
    grad = [r for r in rows if str(r["attack"]).startswith(tuple(gradient))]
    return _compare("gradient-free <= gradient", grad, free, threat_model, budgets, "gradient", "gradient-free", tolerance)


def _optimistic(row: Row) -> Row:
    """A skipped row (a survivors-only attack's) as if the attack had left the image correct; other rows unchanged."""
    if row.get("skipped") in (None, ""):
        return row
    return {**row, "skipped": "", "adv_pred": row["label"]}


def masking_checks(rows: Iterable[Row], threat_model: ThreatModel, budgets: Mapping[str, Budget] | None = None) -> list[MaskingCheck]:
    """All checks of this module on one target's rows, in a fixed order."""
    rows = list(rows)
    return [
        check_unbounded_reaches_all(rows, budgets),
        check_whitebox_vs_blackbox(rows, threat_model, budgets),
        check_gradient_free_vs_gradient(rows, threat_model, budgets),
    ]
