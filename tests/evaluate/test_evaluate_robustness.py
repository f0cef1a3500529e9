"""Robust accuracy at a threat model, minimal perturbations and masking checks, on hand-built rows.

Every expected number below is worked out by hand in the comments from the rows, not taken
from the code under test.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from dfrobust.errors import DfrobustError
from dfrobust.evaluate.masking import (
    check_gradient_free_vs_gradient,
    check_unbounded_reaches_all,
    check_whitebox_vs_blackbox,
    masking_checks,
)
from dfrobust.evaluate.robustness import (
    ThreatModel,
    accuracy_at_radii,
    attack_budget,
    minimal_perturbation,
    robust_accuracy,
    robust_accuracy_by_target,
)

LINF = ThreatModel("linf", 0.02)
BUDGETS = {
    "fgsm": ("linf", 0.02),
    "apgd-ce-linf": ("linf", 0.02),
    "square-linf": ("linf", 0.02),
    "pgd-l2": ("l2", 1.0),
    "cw": None,
    "fmn-l2": None,
}


def row(image: str, attack: str, clean: int, adv: int, label: int = 0, target: str = "t", source: str = "t",
        l2: float = 0.5, linf: float = 0.02, **more: Any) -> dict[str, Any]:  # fmt: skip
    """One result row; ``setting`` is whitebox when the source is the target."""
    setting = "whitebox" if source == target else "blackbox"
    return {"image": image, "label": label, "attack": attack, "source": source, "target": target,
            "setting": setting, "clean_pred": clean, "adv_pred": adv, "l2": l2, "linf": linf, **more}  # fmt: skip


def suite_rows() -> list[dict[str, Any]]:
    """Fakes (label 0) a-d. a: survives all bounded; b: broken by APGD; c: wrong clean; d: survives Linf, broken by CW and PGD-L2."""
    rows = []
    for attack, flips in (("fgsm", {"c"}), ("apgd-ce-linf", {"b", "c"}), ("cw", {"a", "b", "c", "d"}), ("pgd-l2", {"d", "c"})):
        for image in "abcd":
            rows.append(row(image, attack, clean=1 if image == "c" else 0, adv=1 if image in flips else 0))
    return rows


def test_robust_accuracy_counts_only_bounded_attacks_at_the_threat_model() -> None:
    result = robust_accuracy(suite_rows(), LINF, BUDGETS)
    # a and d are correct clean and survive FGSM and APGD; b falls to APGD; c is wrong clean
    assert (result.k, result.n, result.accuracy) == (2, 4, 0.5)
    assert result.clean_accuracy == 0.75
    assert result.attacks == ["apgd-ce-linf", "fgsm"]
    assert result.left_out == ["cw", "pgd-l2"]  # unbounded, and another norm
    assert result.survivors == {"apgd-ce-linf": 2, "fgsm": 3}
    # Wilson 2/4: centre 0.5, half-width 1.96 sqrt(1/16 + 1.96^2/64) / (1 + 1.96^2/4) = 0.350
    assert result.interval == pytest.approx((0.150, 0.850), abs=1e-3)


def test_robust_accuracy_reads_budgets_from_rows_and_at_l2() -> None:
    rows = [dict(r, norm=BUDGETS[r["attack"]][0] if BUDGETS[r["attack"]] else "", eps=BUDGETS[r["attack"]][1] if BUDGETS[r["attack"]] else "")
            for r in suite_rows()]  # fmt: skip
    assert robust_accuracy(rows, LINF).k == 2
    l2 = robust_accuracy(rows, ThreatModel("l2", 1.0))
    assert (l2.k, l2.n, l2.attacks) == (2, 4, ["pgd-l2"])  # a, b survive PGD-L2; c wrong; d flipped


def test_robust_accuracy_on_subsets_and_cascades() -> None:
    rows = suite_rows() + [row(i, "square-linf", 0, 0) for i in "ab"]
    # Square saw only a and b: the verdict covers the images every attack saw, a (robust) and b (broken)
    sub = robust_accuracy(rows, LINF, BUDGETS)
    assert (sub.k, sub.n, sub.undecided) == (1, 2, 2)
    # a cascade: Square ran on APGD's survivors a and d, and broke d -> a alone is robust, of 4
    casc = suite_rows() + [row("a", "square-linf", 0, 0), row("d", "square-linf", 0, 1)]
    result = robust_accuracy(casc, LINF, BUDGETS, cascade=True)
    assert (result.k, result.n, result.undecided) == (1, 4, 0)
    # Square never saw d and nothing broke d: d cannot be judged
    gap = suite_rows() + [row("a", "square-linf", 0, 0)]
    result = robust_accuracy(gap, LINF, BUDGETS, cascade=True)
    assert (result.k, result.n, result.undecided) == (1, 3, 1)


def test_transfer_attacks_are_attacks_of_the_suite() -> None:
    rows = suite_rows() + [row(i, "fgsm", 0 if i != "c" else 1, 1 if i == "a" else 0, source="vgg") for i in "abcd"]
    result = robust_accuracy(rows, LINF, BUDGETS)
    assert "fgsm@vgg" in result.attacks
    assert result.k == 1  # the transfer FGSM breaks a; d is left


def test_robust_accuracy_errors_and_empty_suite() -> None:
    with pytest.raises(DfrobustError, match="budget"):
        robust_accuracy(suite_rows(), LINF, {"fgsm": ("linf", 0.02)})
    with pytest.raises(DfrobustError, match="one detector"):
        robust_accuracy(suite_rows() + [row("a", "fgsm", 0, 0, target="u", source="u")], LINF, BUDGETS)
    none = robust_accuracy(suite_rows(), ThreatModel("linf", 0.05), BUDGETS)
    assert none.accuracy is None and none.n == 0
    assert none.record()["interval"] == [None, None]
    both = robust_accuracy_by_target(suite_rows() + [row("a", "fgsm", 0, 0, target="u", source="u")], LINF, BUDGETS)
    assert (both["t"].k, both["u"].k, both["u"].n) == (2, 1, 1)


def test_threat_model_validation_and_matching() -> None:
    tm = ThreatModel()
    assert (tm.norm, tm.eps) == ("linf", 0.02)  # the paper's FGSM budget
    assert tm.matches(("linf", 0.020000001)) and not tm.matches(("l2", 0.02)) and not tm.matches(None)
    for bad in ({"norm": "l1"}, {"eps": 0}, {"eps": math.inf}, {"norm": "linf", "eps": 2.0}, {"l2_radii": (1.0, 0.5)}):
        with pytest.raises(DfrobustError, match="threat model"):
            ThreatModel(**bad)


def test_attack_budget_from_settings() -> None:
    assert attack_budget({"attack": "fgsm", "eps": 0.02}) == ("linf", 0.02)
    assert attack_budget({"attack": "pgd", "eps": 1.0, "norm": "l2"}) == ("l2", 1.0)
    assert attack_budget({"attack": "cw", "kappa": 200.0}) is None
    assert attack_budget({"attack": "fmn", "norm": "l2", "steps": 100}) is None


def test_minimal_perturbation_quartiles_and_curve() -> None:
    rows = [
        row("e", "fmn-l2", 1, 1, l2=0.0, linf=0.0),  # wrong clean: norm 0 in the curve, not in the quartiles
        row("a", "fmn-l2", 0, 1, l2=0.1, linf=0.01),
        row("b", "fmn-l2", 0, 1, l2=0.2, linf=0.02),
        row("c", "fmn-l2", 0, 1, l2=0.4, linf=0.04),
        row("d", "fmn-l2", 0, 0, l2=0.0, linf=0.0),  # not flipped: infinite
        row("a", "apgd-ce-linf", 0, 0),  # bounded: not a minimal-norm attack
    ]
    (entry,) = minimal_perturbation(rows, BUDGETS, radii={"l2": [0.05, 0.15, 0.3, 1.0], "linf": [0.03]})
    assert (entry["target"], entry["attack"], entry["n_images"], entry["n"], entry["n_success"]) == ("t", "fmn-l2", 5, 4, 3)
    # sorted minimal L2 of the 4 correct images: 0.1, 0.2, 0.4, inf -> Q1 0.175, median 0.3, Q3 inf
    assert entry["q1_l2"] == pytest.approx(0.175)
    assert entry["median_l2"] == pytest.approx(0.3)
    assert entry["q3_l2"] == math.inf
    # all five images: 0, 0.1, 0.2, 0.4, inf; accuracy at r = share above r
    assert [p["accuracy"] for p in entry["curve_l2"]] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert entry["curve_linf"] == [{"radius": 0.03, "accuracy": pytest.approx(0.4)}]
    assert accuracy_at_radii([], [0.1])[0]["accuracy"] != accuracy_at_radii([], [0.1])[0]["accuracy"]  # NaN


def test_minimal_perturbation_default_grid_steps_at_each_norm() -> None:
    rows = [row("a", "cw", 0, 1, l2=0.3), row("b", "cw", 0, 1, l2=0.6)]
    (entry,) = minimal_perturbation(rows)
    assert [(p["radius"], p["accuracy"]) for p in entry["curve_l2"]] == [(0.0, 1.0), (0.3, 0.5), (0.6, 0.0)]
    assert entry["median_l2"] == pytest.approx(0.45)


def test_masking_unbounded_check() -> None:
    ok = check_unbounded_reaches_all([row(i, "cw", 0, 1) for i in "ab"] + [row("c", "cw", 1, 1)], BUDGETS)
    assert ok.passed is True and not ok.flagged
    short = check_unbounded_reaches_all([row("a", "fmn-l2", 0, 1), row("b", "fmn-l2", 0, 0)], BUDGETS)
    assert short.flagged and "fmn-l2 flipped 1/2" in short.message
    assert check_unbounded_reaches_all([row("a", "fgsm", 0, 1)], BUDGETS).passed is None


def test_masking_whitebox_vs_blackbox() -> None:
    white_weak = [row(i, "fgsm", 0, 1 if i == "a" else 0) for i in "abcd"] + [
        row(i, "fgsm", 0, 1 if i != "d" else 0, source="vgg") for i in "abcd"
    ]
    check = check_whitebox_vs_blackbox(white_weak, LINF, BUDGETS)
    # whitebox leaves b, c, d (3/4); the transfer leaves d (1/4): whitebox weaker -> masking
    assert check.flagged and "75.0% (3/4)" in check.message and "25.0% (1/4)" in check.message
    fair = [dict(r, adv_pred=1 - r["adv_pred"]) if r["setting"] == "whitebox" else r for r in white_weak]
    assert check_whitebox_vs_blackbox(fair, LINF, BUDGETS).passed is True  # whitebox 1/4 vs transfer 1/4
    assert check_whitebox_vs_blackbox(white_weak[:4], LINF, BUDGETS).passed is None


def test_masking_square_vs_apgd() -> None:
    rows = [row(i, "apgd-ce-linf", 0, 1 if i in "ab" else 0) for i in "abcd"] + [row(i, "square-linf", 0, 1) for i in "abc"]
    # on the common images a, b, c: APGD leaves c (1/3), Square none (0/3): Square stronger -> masking
    check = check_gradient_free_vs_gradient(rows, LINF, BUDGETS)
    assert check.flagged and "(1/3)" in check.message
    honest = [r for r in rows if r["attack"] != "square-linf"] + [row(i, "square-linf", 0, 0) for i in "abc"]
    assert check_gradient_free_vs_gradient(honest, LINF, BUDGETS).passed is True
    names = [c.name for c in masking_checks(rows, LINF, BUDGETS)]
    assert names == ["unbounded reaches 100%", "whitebox >= blackbox", "gradient-free <= gradient"]
