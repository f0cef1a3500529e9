"""The verdict per detector reads the report's own numbers: families of roles, the best defense, purifiers without an adaptive attack."""

from __future__ import annotations

from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.report.sections.verdict import detector_families, verdict_lines, verdict_rows, verdict_table

ROLES = [
    {"name": "vgg16", "family": "vgg16", "label": "VGG-16", "recipe": {}},
    {"name": "resnet18", "family": "resnet18", "label": "ResNet-18", "recipe": {}},
    {"name": "resnet18-at", "family": "resnet18", "label": "ResNet-18, AT", "recipe": {"adversarial": "fast"}, "start_from": "resnet18"},
    {"name": "resnet18-lip5", "family": "resnet18", "label": "ResNet-18, Lipschitz 5", "recipe": {"lipschitz": 5.0}},  # from scratch
]


def _results() -> dict:
    def board(name: str, clean: float, robust: float, n: int = 20, **extra: object) -> dict:
        return {"defense": name, "label": name, "kind": "trained", "clean_accuracy": clean, "n_test": 100, "robust_accuracy": robust,
                "n_robust": n, "robust_interval": [robust / 2, min(1.0, robust * 1.5)], "robust_attacks": ["fgsm"], **extra}  # fmt: skip

    return {
        "threat_model": {"norm": "linf", "eps": 0.02},
        "table1": [{"model": n, "accuracy": 0.9, "n": 100} for n in ("vgg16", "resnet18", "resnet18-at", "resnet18-lip5")],
        "leaderboard": [
            board("resnet18-at", 0.85, 0.6),
            {
                "defense": "dip + resnet18",
                "label": "DIP",
                "kind": "purifier",
                "purifier": "dip",
                "classifier": "resnet18",
                "clean_accuracy": 0.8,
                "n_test": 10,
                "robust_accuracy": 0.5,
                "n_robust": 8,
                "n_attacked": 8,
                "nonadaptive_accuracy": 0.5,
                "nonadaptive_only": True,
                "adaptive": None,
            },  # fmt: skip
            board("resnet18", 0.93, 0.1),
            board("resnet18-lip5", 0.5, 1.0, near_chance=True),
        ],
        "robust_accuracy": {"vgg16": {"accuracy": 0.05, "n": 20, "interval": [0.01, 0.24], "attacks": ["fgsm"]}},
        "minimal_perturbation": [
            {"detector": "resnet18", "attack": "cw", "n": 20, "n_success": 18, "median_l2": 0.21, "median_linf": 0.03}
        ],
        "adaptive": [],
    }


def test_defended_roles_belong_to_the_detector_they_start_from_or_share_a_family_with() -> None:
    assert detector_families(ROLES) == {"vgg16": [], "resnet18": ["resnet18-at", "resnet18-lip5"]}


def test_the_verdict_quotes_the_leaderboard_and_says_non_adaptive_only() -> None:
    rows = {r["detector"]: r for r in verdict_rows(_results(), ROLES)}
    res = rows["resnet18"]
    assert (res["clean_accuracy"], res["n_clean"], res["robust"]["accuracy"], res["robust"]["n"]) == (0.93, 100, 0.1, 20)
    best = res["best_defense"]  # the leaderboard's order; a detector near chance never counts as the best defense
    assert best["defense"] == "resnet18-at" and round(best["clean_cost"], 6) == 0.08 and round(best["robust_gain"], 6) == 0.5
    assert res["purifiers"] == [
        {
            "purifier": "dip",
            "classifier": "resnet18",
            "adaptive_worst": None,
            "n": 8,
            "nonadaptive": 0.5,
            "nonadaptive_ci": list(wilson_interval(4, 8)),
            "nonadaptive_only": True,
        }
    ]
    assert res["minimal"]["median_l2"] == 0.21
    assert rows["vgg16"]["robust"] == {"accuracy": 0.05, "n": 20, "interval": [0.01, 0.24], "attacks": ["fgsm"]}
    assert rows["vgg16"]["best_defense"] is None
    cells = verdict_table(list(rows.values()), "Linf 0.02").rows
    assert cells[1][2].startswith("10.0% [5.0–15.0] (n = 20)") and "non-adaptive only" in cells[1][5]
    lines = verdict_lines(list(rows.values()), "Linf 0.02")
    assert lines[0].startswith("- VGG-16: clean accuracy 90.0%") and "Best defense: none run" in lines[0]
    assert "resnet18-at: 60.0%" in lines[1] and "-8.0 pts)" in lines[1] and "+50.0 pts robust" in lines[1]


def test_no_verdict_before_any_detector_is_evaluated() -> None:
    assert verdict_rows({}, ROLES) == []
