"""`dfrobust data ...`: help, outputs and one-line errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfrobust.cli import main
from dfrobust.data.manifest import read_manifest


@pytest.mark.parametrize("sub", [[], ["synth"], ["faceswap"], ["import"], ["preview"]])
def test_help_has_examples(sub: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", *sub, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "dfrobust data" in text


def test_data_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().out


def test_synth_with_preview_and_preview_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, sheet = tmp_path / "d", tmp_path / "sheet.png"
    assert main(["data", "synth", "--out", str(out), "--n", "16", "--size", "32", "--seed", "3", "--preview", str(sheet),
                 "--feather", "0.1", "--identities", "8"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "train 6 real + 6 fake, test 2 real + 2 fake" in printed and str(sheet) in printed
    m = read_manifest(out)
    assert m["created_by"]["args"]["feather"] == 0.1 and m["created_by"]["args"]["seed"] == 3
    with Image.open(sheet) as im:
        assert im.width > 8 * 128 and im.height > 2 * 128  # 8 real + 8 fake, 8 per row, 128 px tiles
        arr = np.asarray(im.convert("RGB"))
    assert arr.std() > 20  # faces, not a blank sheet
    again = tmp_path / "again.png"
    assert main(["data", "preview", str(out), "--out", str(again), "--per-class", "4"]) == 0
    assert again.is_file()


def test_import_prints_skipped_files_and_imbalance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for cls, n in (("real", 6), ("fake", 2)):
        (src / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(src / cls / f"{i}.png")
    (src / "fake" / "bad.jpg").write_bytes(b"nope")
    assert main(["data", "import", str(src), "--out", str(tmp_path / "out"), "--size", "16"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable files" in printed and "fake/bad.jpg" in printed
    assert "class imbalance: 6 real vs 2 fake" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "synth", "--out", "{tmp}/x", "--n", "4"], "--n must be at least 8"),
        (["data", "synth", "--out", "{tmp}/x", "--resample", "0.2"], "--resample must be >= 1"),
        (["data", "synth", "--out", "{tmp}/x", "--test-fraction", "1.5", "--n", "16", "--size", "32"], "--test-fraction"),
        (["data", "import", "{tmp}/missing", "--out", "{tmp}/x"], "does not exist"),
        (["data", "faceswap", "--real", "{tmp}/missing", "--out", "{tmp}/x"], "does not exist"),
        (["data", "preview", "{tmp}/missing", "--out", "{tmp}/x.png"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
