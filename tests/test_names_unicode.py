"""Names that look harmless but are not (issue 21's "unicode" fuzz case), and sizes bounded in study configs.

A C1 control (NEL), an invisible mark (zero-width space, right-to-left override) or a
compatibility look-alike (a fullwidth solidus, which NFKC-normalising tools turn into ``/``;
one-dot leaders that read as ``..``) is refused like ``/`` and ``..``; ordinary accented names stay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.utils.names import check_name

TRICKY = ["evil\u202egnp", "a\u200bb", "a\x85b", "a\uff0fb", "\u2024\u2024", "\ufe52\ufe52", "x\ue000"]


def _first_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", TRICKY)
def test_invisible_and_look_alike_names_are_refused(name: str) -> None:
    with pytest.raises(DfrobustError, match="purifier"):
        check_name(name, "purifier")


@pytest.mark.parametrize("name", ["détecteur", "Детектор", "探测器", "resnet18-lip50"])
def test_ordinary_names_in_any_script_are_kept(name: str) -> None:
    assert check_name(name, "card name") == name


@pytest.mark.parametrize("name", TRICKY)
def test_tricky_names_through_set_and_cards(name: str, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sentinel.txt").write_text("x")
    run = tmp_path / "R"
    assert main(["reproduce", "--preset", "tiny", "--run", str(run), "--set", f"adaptive.purifiers={json.dumps([name])}"]) == 2
    assert "adaptive.purifiers" in _first_error(capsys.readouterr().err)
    card = tmp_path / "c.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\nname = {json.dumps(name)}\n')
    assert main(["reproduce", "--preset", "tiny", "--run", str(run), "--detector", str(card)]) == 2
    assert _first_error(capsys.readouterr().err).startswith("error: ")
    assert not run.exists() and (victim / "sentinel.txt").read_text() == "x"


def test_study_image_size_is_bounded_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data synth --size` is bounded; the study's data.size, which reaches the same generator, is too."""
    run = tmp_path / "R"
    assert main(["reproduce", "--preset", "tiny", "--run", str(run), "--set", "data.size=100000"]) == 2
    assert _first_error(capsys.readouterr().err).startswith("error: config data.size = 100000 needs a whole number >= 8 and <= 4096")
    assert not run.exists()
