"""A DIP study resumed after a kill writes exactly the tables of an uninterrupted run (issue 17)."""

from __future__ import annotations

from pathlib import Path

from dip_helpers import make_attack_folder

from dfrobust.defenses.dip import DipConfig
from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study

OUTPUTS = ("table3.csv", "table4.csv", "sweep.csv", "predictions.csv", "trajectories.csv")


def test_resumed_study_writes_the_same_tables(tmp_path: Path, toy_dataset: Path, toy_model: Path) -> None:
    adv = [
        make_attack_folder(tmp_path / "fgsm-wb", toy_dataset, toy_model, "fgsm", "whitebox"),
        make_attack_folder(tmp_path / "cw-bb", toy_dataset, toy_model, "cw", "blackbox"),
    ]
    dip = DipConfig(iterations=4, record_every=2, channels_down=(4, 8), channels_up=(4, 8), channels_skip=(0, 2), input_channels=6)
    cfg = DipStudyConfig(dip=dip, per_category=1, batch_size=4, device="cpu", transforms=False)

    whole = run_dip_study(toy_dataset, toy_model, adv, tmp_path / "whole", cfg)
    resumed_dir = tmp_path / "resumed"
    run_dip_study(toy_dataset, toy_model, adv, resumed_dir, cfg)
    # killed after the sample was drawn and one batch finished, before the tables were merged
    (resumed_dir / "summary.json").unlink()
    for name in OUTPUTS:
        (resumed_dir / name).unlink()
    sorted((resumed_dir / "parts").glob("part-*.json"))[-1].unlink()
    resumed = run_dip_study(toy_dataset, toy_model, adv, resumed_dir, cfg)

    for name in OUTPUTS:
        assert (resumed_dir / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert resumed["table4"] == whole["table4"] and resumed["shortfalls"] == whole["shortfalls"]
    assert [r["category"] for r in whole["table4"]][:2] == ["fgsm-whitebox/fake-wrong", "fgsm-whitebox/fake-correct"]
