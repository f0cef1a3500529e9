"""The leaderboard ranks a detector near chance last: a constant "fake" answer keeps every attacked fake detected."""

from __future__ import annotations

from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table


def test_a_detector_near_chance_ranks_last_and_says_so() -> None:
    def model(acc: float, auroc: float) -> dict:
        return {"metrics": {"test": {"n": 100, "accuracy": acc, "auroc": auroc}}}

    ctx = {
        "roles": [{"name": "resnet18", "group": "paper", "label": "ResNet-18", "sample_source": True},
                  {"name": "resnet18-at", "group": "hardened", "label": "ResNet-18, PGD-AT", "start_from": "resnet18"},
                  {"name": "resnet18-lip5", "group": "lipschitz", "label": "ResNet-18, Lipschitz 5", "start_from": "resnet18"}],
        "models": {"resnet18": model(0.93, 0.99), "resnet18-at": model(0.50, 0.503), "resnet18-lip5": model(0.92, 0.99)},
        "table2_rows": [{"model": m, "n": 20, "attack": "fgsm", "setting": "whitebox", "source": m} for m in ("resnet18", "resnet18-at", "resnet18-lip5")],
    }  # fmt: skip
    wide = {"resnet18": {"fgsm_whitebox": 0.0}, "resnet18-at": {"fgsm_whitebox": 1.0}, "resnet18-lip5": {"fgsm_whitebox": 0.3}}
    rows = leaderboard_rows(ctx, wide)
    assert [r["defense"] for r in rows] == ["resnet18-lip5", "resnet18", "resnet18-at"]  # 100% "robust" at chance: last
    assert [r["near_chance"] for r in rows] == [False, False, True]
    cells = leaderboard_table(rows).rows[-1]
    assert any(c.startswith("100.0%") and c.endswith("(near chance)") for c in cells)
