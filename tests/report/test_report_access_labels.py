"""Attacks are named by what they need of the model; the report's device and data-size lines read as text."""

from __future__ import annotations

from dfrobust.report.attack_figures import series_label, setting_label
from dfrobust.report.collected import CollectedRun
from dfrobust.report.study_tables import device_text, settings_table


def test_square_is_a_score_based_black_box_attack_and_gradient_attacks_stay_whitebox() -> None:
    assert setting_label("square-linf", "whitebox") == "score-based black-box"
    assert series_label("square-l2_whitebox") == "SQUARE-L2 score-based black-box"
    assert series_label("apgd-ce-linf_whitebox") == "APGD-CE-LINF whitebox"
    assert series_label("fgsm_blackbox_from_vgg16") == "FGSM blackbox (from vgg16)"  # a transfer keeps the paper's word


def test_auto_names_the_device_it_resolved_to_and_data_size_is_text() -> None:
    stages = [{"host": {"device": "cpu"}}, {"host": {"device": "auto"}}, {}]
    assert device_text("auto", stages) == "auto (resolved: cpu)"
    assert device_text("auto", [{"host": {"device": "auto"}}]).startswith("auto (not resolved")
    assert device_text("cpu", stages) == "cpu"
    run = CollectedRun(
        cfg={"run": {"preset": "tiny", "seed": 0}},
        stored={"device": "auto"},
        stages=stages,
        manifest={"image_size": [32, 32], "counts": {"train": {"fake": 36, "real": 36}, "test": {"fake": 12, "real": 12}}},
    )
    rows = dict(settings_table(run).rows)
    assert rows["data size"] == "32x32 px; train 36 fake, 36 real; test 12 fake, 12 real"
    assert rows["device"] == "auto (resolved: cpu)"
