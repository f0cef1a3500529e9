"""The collapse diagnosis: constant predictors and chance-level scores are marked, healthy detectors not."""

from __future__ import annotations

from dfrobust.evaluate.collapse import collapsed


def test_constant_fake_predictor_is_collapsed_with_both_symptoms() -> None:
    # the cpu preset's PGD-AT model: clean 50.0%, every image called fake, AUROC 0.503
    d = collapsed({"accuracy": 0.5, "real_recall": 0.0, "fake_recall": 1.0, "auroc": 0.503})
    assert d and d.collapsed
    assert "real recall 0.000" in d.reason and "AUROC 0.503" in d.reason and "fake recall" not in d.reason


def test_constant_real_predictor_and_chance_scores() -> None:
    assert "fake recall 0.020" in collapsed({"real_recall": 0.99, "fake_recall": 0.02, "auroc": 0.9}).reason
    only_auroc = collapsed({"real_recall": 0.5, "fake_recall": 0.5, "auroc": 0.55})
    assert only_auroc and only_auroc.reason == "AUROC 0.550 < 0.6 (scores near chance)"


def test_healthy_and_borderline_detectors_are_not_collapsed() -> None:
    healthy = collapsed({"real_recall": 0.6, "fake_recall": 0.52, "auroc": 0.646})  # the quick fast-AT model
    assert not healthy and healthy.reason == ""
    assert not collapsed({"real_recall": 0.06, "fake_recall": 0.99, "auroc": 0.6})  # just above both limits
    assert not collapsed({"auroc": None, "real_recall": ""})  # missing metrics are no symptom
    assert collapsed({"real_recall": 0.2, "auroc": 0.9}, min_recall=0.25)
