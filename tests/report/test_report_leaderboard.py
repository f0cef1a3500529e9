"""The leaderboard ranks a detector near chance last: a constant "fake" answer keeps every attacked fake detected."""

from __future__ import annotations

from dfrobust.evaluate.robustness import RobustAccuracy
from dfrobust.report.collected import CollectedRun
from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table
from dfrobust.report.study_tables import Table2
from dfrobust.report.tables import Table
from dfrobust.studies.attack_tables import table2_counts


def _robust(name: str, k: int, n: int) -> RobustAccuracy:
    return RobustAccuracy(name, {"norm": "linf", "eps": 0.02}, k / n, k, n, (0.0, 1.0), 1.0, ["fgsm"])


def _table2(rows: list[dict], wide: dict) -> Table2:
    """Table II as the report would pass it: only its long rows (the n per cell) and wide rows matter here."""
    return Table2(Table("Table II", []), rows, wide, table2_counts(rows))


def test_a_detector_near_chance_ranks_last_and_says_so() -> None:
    def model(acc: float, auroc: float) -> dict:
        return {"metrics": {"test": {"n": 100, "accuracy": acc, "auroc": auroc}}}

    run = CollectedRun(
        roles=[{"name": "resnet18", "group": "paper", "label": "ResNet-18", "sample_source": True},
               {"name": "resnet18-at", "group": "hardened", "label": "ResNet-18, PGD-AT", "start_from": "resnet18"},
               {"name": "resnet18-lip5", "group": "lipschitz", "label": "ResNet-18, Lipschitz 5", "start_from": "resnet18"}],
        models={"resnet18": model(0.93, 0.99), "resnet18-at": model(0.50, 0.503), "resnet18-lip5": model(0.92, 0.99)},
    )  # fmt: skip
    long_rows = [
        {"model": m, "n": 20, "attack": "fgsm", "setting": "whitebox", "source": m} for m in ("resnet18", "resnet18-at", "resnet18-lip5")
    ]
    wide = {"resnet18": {"fgsm_whitebox": 0.0}, "resnet18-at": {"fgsm_whitebox": 1.0}, "resnet18-lip5": {"fgsm_whitebox": 0.3}}
    robust = {"resnet18": _robust("resnet18", 0, 20), "resnet18-at": _robust("resnet18-at", 20, 20),
              "resnet18-lip5": _robust("resnet18-lip5", 6, 20)}  # fmt: skip
    rows = leaderboard_rows(run, _table2(long_rows, wide), robust, {"norm": "linf", "eps": 0.02})
    assert [r["defense"] for r in rows] == ["resnet18-lip5", "resnet18", "resnet18-at"]  # 100% "robust" at chance: last
    assert [r["near_chance"] for r in rows] == [False, False, True]
    assert rows[-1]["collapsed"] and "AUROC 0.503" in rows[-1]["collapsed"]
    cells = leaderboard_table(rows).rows[-1]
    assert any(c.startswith("100.0%") and "(collapsed: " in c for c in cells)


def test_ties_in_robust_accuracy_rank_by_clean_accuracy() -> None:
    def model(acc: float) -> dict:
        return {"metrics": {"test": {"n": 100, "accuracy": acc, "auroc": 0.95, "real_recall": 0.9, "fake_recall": 0.9}}}

    run = CollectedRun(
        roles=[{"name": "a", "group": "x", "label": "A"}, {"name": "b", "group": "x", "label": "B"}],
        models={"a": model(0.80), "b": model(0.90)},
    )
    rows = leaderboard_rows(run, None, {"a": _robust("a", 5, 20), "b": _robust("b", 5, 20)}, {"norm": "linf", "eps": 0.02})
    assert [r["defense"] for r in rows] == ["b", "a"]
    assert all(r["threat_model"] == {"norm": "linf", "eps": 0.02} and r["n_robust"] == 20 for r in rows)


def test_a_masking_warning_is_flagged_beside_robust_accuracy_with_a_note() -> None:
    from dfrobust.report.leaderboard import MASKING_FLAG
    from dfrobust.report.verdicts import masking_by_target

    def model(acc: float) -> dict:
        return {"metrics": {"test": {"n": 100, "accuracy": acc, "auroc": 0.95, "real_recall": 0.9, "fake_recall": 0.9}}}

    warning = "gradients: 40% of input gradients are zero (shattered gradients?)"
    run = CollectedRun(
        roles=[{"name": "a", "group": "x", "label": "A"}, {"name": "b", "group": "x", "label": "B"}],
        models={"a": model(0.80), "b": model(0.90)},
        curve_warnings={"a": [warning]},
    )
    robust = {"a": _robust("a", 15, 20), "b": _robust("b", 5, 20)}
    rows = leaderboard_rows(run, None, robust, {"norm": "linf", "eps": 0.02})  # default: the curves' warnings
    assert [(r["defense"], r["masking_warnings"]) for r in rows] == [("a", [warning]), ("b", [])]
    assert masking_by_target(run) == {"a": [warning]}  # no attack rows: the curves' warnings only
    table = leaderboard_table(rows)
    robust_col = next(i for i, c in enumerate(table.columns) if c.startswith("robust accuracy"))
    assert table.rows[0][robust_col].startswith("75.0%") and table.rows[0][robust_col].endswith(MASKING_FLAG)
    assert MASKING_FLAG not in table.rows[1][robust_col]
    assert f"{MASKING_FLAG}: a gradient-masking check failed" in table.note and f"A: {warning}" in table.note
    clean = leaderboard_table(leaderboard_rows(run, None, robust, {"norm": "linf", "eps": 0.02}, masking={}))
    assert MASKING_FLAG not in clean.note and not any(MASKING_FLAG in c for row in clean.rows for c in row)
