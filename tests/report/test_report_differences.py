"""The config's differences from the paper: attacks beyond the paper's own (FMN) are no difference."""

from __future__ import annotations

from dfrobust.config import load_preset, study_config
from dfrobust.report.differences import config_differences


def _keys(preset: str, overrides: list[str] | None = None) -> dict[str, tuple[object, object]]:
    return {k: (a, b) for k, a, b in config_differences(study_config(preset, overrides), load_preset("paper"))}


def test_an_attack_list_differs_from_the_papers_only_on_the_papers_own_attacks() -> None:
    quick, tiny = _keys("quick"), _keys("tiny")
    assert "fmn" in load_preset("paper")["attack"]["attacks"] and "fmn" not in study_config("quick")["attack"]["attacks"]
    assert "attack.attacks" not in quick  # quick leaves out FMN, which the paper never ran either
    assert not any(k.startswith("attack.fmn.") for k in tiny)  # FMN's settings: beyond the paper, nothing to differ from
    assert "attack.cw.max_steps" in quick  # the paper's own attacks' settings still differ
    dropped = _keys("quick", ['attack.attacks=["fgsm"]'])
    assert dropped["attack.attacks"][0] == ["fgsm"]  # without the paper's CW: a difference
