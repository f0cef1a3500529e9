"""Table V: every rule of a randomized defense, the attack-time purifier and the sanity check named in the row."""

from __future__ import annotations

from typing import Any

from dfrobust.report.adaptive import table5


def _summary(**extra: Any) -> dict[str, Any]:
    rates = {"accuracy_clean_purified": 1.0, "accuracy_nonadaptive_worst": 0.75, "accuracy_adaptive": 0.5, "accuracy_adaptive_worst": 0.25,
             "accuracy_adaptive_vote": 0.5, "accuracy_adaptive_any_iterate": 0.0, "accuracy_defended": 0.25}  # fmt: skip
    return {"n": 4, "attack": "apgd-ce-linf", "bpda": "exact", "eot": 1, "eval_draws": 3, **rates,
            **{f"{k}_ci": [0.0, 1.0] for k in rates}, **extra}  # fmt: skip


def test_table5_shows_every_rule_and_names_what_the_attack_saw() -> None:
    cheaper = {"config": {"attack_purifier": {"classify_at": 100}, "defense": {"classify_at": 600}}, "attack_purifier_cheaper": True,
               "sanity": {"n": 2, "fooled": 1, "passed": False}}  # fmt: skip
    t, rows = table5({"dip": _summary(**cheaper), "jpeg": _summary(sanity={"n": 2, "fooled": 2, "passed": True})}, None, None)
    header = t.columns
    for column in ("worst of N", "majority of N", "any iterate", "defended"):
        assert column in header
    dip_row, jpeg_row = t.rows
    assert "T = 100, the defense's T = 600" in dip_row[1] and "SANITY CHECK FAILED" in dip_row[1]
    assert "sanity check passed" in jpeg_row[1] and "cheaper" not in jpeg_row[1]
    assert dip_row[header.index("any iterate")].startswith("0.0%") and dip_row[header.index("majority of N")].startswith("50.0%")
    assert rows[0]["accuracy_adaptive_any_iterate"] == 0.0 and rows[0]["attack_purifier_cheaper"] and rows[0]["eval_draws"] == 3


def test_table5_splits_the_study_s_fooled_fakes_from_the_natural_ones() -> None:
    fooled = {"n": 2, "accuracy_adaptive_worst": 0.5, "accuracy_adaptive_worst_ci": [0.1, 0.9]}
    t, rows = table5({"dip": _summary(on_study_fooled=fooled)}, None, None)
    assert [r[2] for r in t.rows] == ["all", "fooled"] and [r[3] for r in t.rows] == ["4", "2"]
    assert rows[0]["on_study_fooled"]["n"] == 2
