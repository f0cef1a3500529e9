"""``reproduce --detector``: the user's own detectors (cards) red-teamed end to end, without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import train_tiny
from dfrobust.cli import main
from dfrobust.models.checkpoint import save_detector
from dfrobust.utils.io import read_csv, read_json


def test_two_cards_get_the_whole_study_and_report(toy_dataset: Path, toy_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    other = save_detector(train_tiny(toy_dataset, steps=60, seed=1), tmp_path / "other.safetensors",
                          {"input_size": [32, 32], "seed": 1, "training": {"note": "tests"}})
    cards = []
    for name, model in (("mine", toy_model), ("theirs", other)):
        card = tmp_path / f"{name}.toml"
        card.write_text(f'source = "dfrobust:{model}"\nname = "{name}"\n')
        cards.append(card)
    run = tmp_path / "run"
    args = ["reproduce", "--preset", "tiny", "--data", str(toy_dataset), "--run", str(run), "--device", "cpu"]
    assert main([*args, "--detector", str(cards[0]), "--detector", str(cards[1])]) == 0
    assert "[run]  card/mine" in (run / "run.log").read_text()  # the stage lines reach RUN/run.log
    plan = read_json(run / "plan.json")
    assert [r["name"] for r in plan["roles"]] == ["mine", "theirs"]
    assert not any(s["name"].startswith("train/") for s in plan["stages"])  # nothing is trained
    rows = read_csv(run / "attacks" / "fgsm-mine" / "results.csv")
    assert {(r["target"], r["setting"]) for r in rows} == {("mine", "whitebox"), ("theirs", "blackbox")}
    results = read_json(run / "report" / "results.json")
    assert [r["model"] for r in results["table1"]] == ["mine", "theirs"]
    assert results["table1"][0]["paper"] is None  # the paper's numbers stay beside the paper's rows only
    assert read_json(run / "dip" / "summary.json")["model"]["name"] == "mine"
    page = (run / "report" / "report.html").read_text()
    assert "mine (your detector)" in page or "mine" in page
    # a broken card is a one-line error before any work
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "dfrobust:missing.safetensors"\nname = "bad"\noutput = "sideways"\n')
    capsys.readouterr()
    assert main([*args[:-2], "--run", str(tmp_path / "run2"), "--detector", str(bad)]) == 2
    assert "bad.toml" in capsys.readouterr().err and not (tmp_path / "run2" / "plan.json").exists()
