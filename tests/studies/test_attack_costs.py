"""Costs said up front: an attack's budget before it starts, an ETA after its first batch, no doubled progress lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dfrobust.attacks.base import make_attack
from dfrobust.cli import main
from dfrobust.utils.runtime import PlainProgress


def test_budgets_multiply_searches_steps_restarts_and_queries() -> None:
    cw = make_attack("cw").budget()
    assert cw.terms == [(5, "searches"), (1000, "steps")] and cw.per_image == 5000 and cw.unit == "gradient steps"
    assert cw.describe(24) == "5 searches x 1,000 steps = 5,000 gradient steps per image x 24 images = 120,000 gradient steps"
    square = make_attack("square", queries=500).budget()
    assert (square.per_image, square.unit) == (500, "queries")
    assert square.describe(2) == "500 queries per image x 2 images = 1,000 queries"
    assert make_attack("fgsm").budget().per_image == 1
    assert make_attack("apgd", steps=20, restarts=3).budget().per_image == 60


def test_a_progress_line_is_not_repeated_when_the_bar_closes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dfrobust.progress"):
        bar = PlainProgress(total=2, desc="job", unit="batch", every=0)
        bar.update()
        bar.update()
        bar.close()
        quiet = PlainProgress(total=3, desc="slow", unit="batch", every=0)
        quiet.update()
        quiet.every = 1e9  # the last step is not reported on the interval: closing reports it
        quiet.update(2)
        quiet.close()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [
        "job: 1/2 batch (50%)",
        "job: 2/2 batch (100%)",
        "slow: 1/3 batch (33%)",
        "slow: 3/3 batch (100%)",
    ]


def test_the_cli_says_the_budget_before_and_an_eta_after_the_first_batch(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DFROBUST_QUIET", raising=False)
    with caplog.at_level(logging.INFO, logger="dfrobust.progress"):
        args = ["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "cw", "--search-steps", "2",
                "--max-steps", "3", "--max-images", "4", "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "cw")]  # fmt: skip
        assert main(args) == 0
    lines = [r.getMessage() for r in caplog.records]
    budget = next(i for i, line in enumerate(lines) if "budget" in line)
    assert "2 searches x 3 steps = 6 gradient steps per image x 4 images = 24 gradient steps" in lines[budget]
    eta = next(i for i, line in enumerate(lines) if "first batch in" in line)
    assert budget < eta and "for the other 1" in lines[eta]
    assert sum("cw on" in line and "(100%)" in line for line in lines) <= 1  # the batch bar's last line: once at most


def test_help_names_a_fast_setting_for_exploration(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("attack", "reproduce"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "exploration" in capsys.readouterr().out


def test_an_adaptive_run_says_its_budget_with_the_eot_draws(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dfrobust.studies.adaptive_run import run_adaptive

    monkeypatch.delenv("DFROBUST_QUIET", raising=False)
    with caplog.at_level(logging.INFO, logger="dfrobust.progress"):
        dip = {"iterations": 4, "input_channels": 4, "channels_down": (4, 4), "channels_up": (4, 4), "channels_skip": (0, 2)}
        run_adaptive(
            toy_dataset, toy_model, "dip", dip, "apgd", {"steps": 3}, tmp_path / "a", images=4, batch_size=2, eot=2, nonadaptive=False
        )
        run_adaptive(toy_dataset, toy_model, "blur", {}, "apgd", {"steps": 3}, tmp_path / "b", images=2, eot=2, nonadaptive=False)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "budget 3 gradient steps per image x 4 images = 12 gradient steps; x 2 purifier draws (EOT) = 24 purifications" in x for x in lines
    )
    assert any("first batch in" in x and "ETA" in x for x in lines)
    # a deterministic purifier runs once per gradient, whatever --eot says
    assert any("apgd through blur: budget 3 gradient steps per image x 2 images = 6 gradient steps (at most" in x for x in lines)
