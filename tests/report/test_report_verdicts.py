"""The report's robust accuracy counts bounded attacks on the detector itself only; unbounded CW gives minimal norms."""

from __future__ import annotations

from dfrobust.report.collected import CollectedRun
from dfrobust.report.verdicts import minimal_rows, robust_by_target, threat_model_of


def _row(image: str, attack: str, adv_pred: int, l2: float = 0.5, linf: float = 0.02, setting: str = "whitebox") -> dict:
    return {"image": image, "label": "0", "attack": attack, "source": "m", "target": "m", "setting": setting,
            "clean_pred": "0", "adv_pred": str(adv_pred), "l2": str(l2), "linf": str(linf)}  # fmt: skip


def test_robust_accuracy_ignores_unbounded_and_transfer_attacks() -> None:
    # 4 fakes: FGSM flips a; APGD flips b; CW (unbounded) flips all four; a transfer attack flips c
    rows = [_row(i, "fgsm", int(i == "a")) for i in "abcd"] + [_row(i, "apgd-ce-linf", int(i == "b")) for i in "abcd"]
    rows += [_row(i, "cw", 1, l2=v) for i, v in zip("abcd", (0.1, 0.2, 0.3, 0.4))]
    rows += [_row(i, "fgsm", int(i == "c"), setting="blackbox") for i in "abcd"]
    budgets = {"fgsm": ("linf", 0.02), "apgd-ce-linf": ("linf", 0.02), "cw": None}
    run = CollectedRun(cfg={"threat_model": {"norm": "linf", "eps": 0.02}}, attack_rows=rows, attack_budgets=budgets)
    robust = robust_by_target(run)["m"]
    assert (robust.k, robust.n) == (2, 4)  # c and d survive both bounded attacks; CW's 100% does not enter
    assert sorted(robust.attacks) == ["apgd-ce-linf", "fgsm"]
    (minimal,) = minimal_rows(run)
    assert minimal["attack"] == "cw" and minimal["n_success"] == 4 and abs(minimal["median_l2"] - 0.25) < 1e-9


def test_another_radius_is_not_the_threat_model() -> None:
    rows = [_row(i, "fgsm", 1) for i in "ab"]
    run = CollectedRun(cfg={"threat_model": {"norm": "linf", "eps": 0.03}}, attack_rows=rows, attack_budgets={"fgsm": ("linf", 0.02)})
    assert robust_by_target(run)["m"].accuracy is None  # no attack at Linf 0.03 ran: no verdict, not 100%
    assert threat_model_of({}).record() == {"norm": "linf", "eps": 0.02, "l2_radii": [0.25, 0.5, 1.0, 2.0]}


def test_masking_checks_over_attack_rows_join_the_curves_warnings() -> None:
    from dfrobust.report.verdicts import masking_by_target

    # CW (unbounded) leaves d unflipped: a sign of masked gradients; the curves warned too
    rows = [_row(i, "fgsm", int(i == "a")) for i in "abcd"] + [_row(i, "cw", int(i != "d")) for i in "abcd"]
    budgets = {"fgsm": ("linf", 0.02), "cw": None}
    run = CollectedRun(attack_rows=rows, attack_budgets=budgets, curve_warnings={"m": ["curves: accuracy rises with eps"]})
    (first, second) = masking_by_target(run)["m"]
    assert first == "curves: accuracy rises with eps" and second.startswith("unbounded reaches 100%: ") and "cw flipped 3/4" in second
    honest = [_row(i, "fgsm", int(i == "a")) for i in "abcd"] + [_row(i, "cw", 1) for i in "abcd"]
    assert masking_by_target(CollectedRun(attack_rows=honest, attack_budgets=budgets)) == {}
