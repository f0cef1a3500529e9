"""The report's verdicts from per-image rows: robust accuracy at the study's threat model, minimal perturbations.

Robust accuracy follows AutoAttack: an attacked fake counts only if the detector is right on it
clean and after every *bounded* attack on the detector itself at the threat model's norm and radius
(gradient and score-based; transfer attacks are reported apart), over the fakes every such attack
saw. Unbounded attacks (CW-L2 with its search of c, FMN) never enter it: they report the smallest
perturbation that flips each image instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dfrobust.evaluate.masking import masking_checks
from dfrobust.evaluate.robustness import RobustAccuracy, ThreatModel, minimal_perturbation, robust_accuracy_by_target
from dfrobust.report.collected import CollectedRun
from dfrobust.report.tables import Table, rate


def threat_model_of(cfg: Mapping[str, Any]) -> ThreatModel:
    """The study's threat model (``[threat_model]`` of the preset; the paper's Linf 0.02 when absent)."""
    t = dict(cfg.get("threat_model") or {})
    if "l2_radii" in t:
        t["l2_radii"] = tuple(t["l2_radii"])
    return ThreatModel(**t)


def robust_by_target(run: CollectedRun) -> dict[str, RobustAccuracy]:
    """Robust accuracy of every attacked detector at the study's threat model."""
    budgets = run.attack_budgets
    # the attacks on the detector itself (gradient and score-based), as AutoAttack's suite; transfers are reported apart
    # with the rows of images a survivors-only attack skipped: they count as fooled (by the earlier attack of the chain)
    every = [*run.attack_rows, *run.skipped_rows]
    rows = [r for r in every if r["attack"] in budgets and r.get("setting") == "whitebox"]
    return robust_accuracy_by_target(rows, threat_model_of(run.cfg), budgets) if rows else {}


def masking_by_target(run: CollectedRun) -> dict[str, list[str]]:
    """Per detector, the gradient-masking warnings: its robustness curves' (``summary.json`` ``warnings``)
    and the failed checks of :mod:`dfrobust.evaluate.masking` over its attack rows (Carlini et al. 2019)."""
    out: dict[str, list[str]] = {name: list(ws) for name, ws in run.curve_warnings.items() if ws}
    budgets = run.attack_budgets
    rows = [r for r in [*run.attack_rows, *run.skipped_rows] if r["attack"] in budgets]
    by_target: dict[str, list[Any]] = {}
    for r in rows:
        by_target.setdefault(str(r["target"]), []).append(r)
    tm = threat_model_of(run.cfg) if by_target else None
    for target, rs in sorted(by_target.items()):
        failed = [f"{c.name}: {c.message}" for c in masking_checks(rs, tm, budgets) if c.flagged]
        if failed:
            out.setdefault(target, []).extend(failed)
    return out


def minimal_rows(run: CollectedRun) -> list[dict[str, Any]]:
    """Per detector and unbounded whitebox attack: median and quartiles of the smallest L2 that flipped each image."""
    budgets = run.attack_budgets
    rows = [r for r in run.attack_rows if r.get("setting") == "whitebox" and r["attack"] in budgets]
    out = []
    for e in minimal_perturbation(rows, budgets):
        out.append({"detector": e["target"], "attack": e["attack"], "n": e["n"], "n_success": e["n_success"],
                    **{k: (None if not math.isfinite(e[k]) else e[k]) for k in
                       ("q1_l2", "median_l2", "q3_l2", "q1_linf", "median_linf", "q3_linf")}})  # fmt: skip
    return out


def _norm(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.3f}"


def minimal_table(rows: list[dict[str, Any]], labels: Mapping[str, str]) -> Table:
    """The minimal-perturbation table of the report."""
    t = Table(
        "Minimal perturbations (unbounded attacks: never part of robust accuracy)",
        ["detector", "attack", "n", "flipped", "L2 median [Q1–Q3]", "Linf median [Q1–Q3]"],
        note="Smallest perturbation that made each attacked fake (correct when clean) pass as real, pixels in [0, 1]; "
        "an image the attack did not flip counts as infinitely far ('not reached'), so a median is finite only when most "
        "images flipped. Robust accuracy at a radius r is the share of images whose minimal norm exceeds r.",
    )
    for r in rows:
        t.rows.append([
            labels.get(r["detector"], r["detector"]), r["attack"].upper(), str(r["n"]), rate(r["n_success"] / r["n"], r["n"]) if r["n"] else "–",
            f"{_norm(r['median_l2'])} [{_norm(r['q1_l2'])}–{_norm(r['q3_l2'])}]",
            f"{_norm(r['median_linf'])} [{_norm(r['q1_linf'])}–{_norm(r['q3_linf'])}]",
        ])  # fmt: skip
    return t
