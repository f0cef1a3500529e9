"""A command deletes or replaces only what it can prove it made (issue 17, data loss 1, 2 and 4).

Each test sets up the user's files, runs the command that used to destroy them, and checks
that the command refuses with one line (exit status 2) and that every file is still there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dfrobust.cli import main
from dfrobust.data.manifest import read_manifest
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import atomic_path, write_json


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _user_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.csv").write_text("x\n")
    return root


def test_writers_never_replace_a_folder(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "results")
    with pytest.raises(DfrobustError, match="is a folder; give a file path"):
        write_json(folder, {"a": 1})
    with pytest.raises(DfrobustError, match="is a folder"), atomic_path(folder) as tmp:
        tmp.write_text("never")
    assert _tree(folder) == {"sub/a.csv": b"x\n"}
    write_json(tmp_path / "file.json", {"a": 1})  # a file is still replaced atomically
    write_json(tmp_path / "file.json", {"a": 2})
    assert (tmp_path / "file.json").read_text().strip().endswith("}") and not list(tmp_path.glob(".file.json.*"))


def test_evaluate_json_at_a_folder_is_refused(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _user_folder(tmp_path / "results")
    code = main(["evaluate", "--data", str(toy_dataset), "--model", str(toy_model), "--json", str(folder), "--no-gradients"])
    assert code == 2
    _one_line_error(capsys, "--json", "is a folder; give a file path")
    assert _tree(folder) == {"sub/a.csv": b"x\n"}


def test_preview_out_at_a_folder_is_refused(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.jpg").write_bytes(b"my photo")
    assert main(["data", "preview", str(toy_dataset), "--out", str(photos)]) == 2
    _one_line_error(capsys, "is a folder; give a file path")
    assert _tree(photos) == {"p.jpg": b"my photo"}


@pytest.fixture()
def victim(toy_dataset: Path, tmp_path: Path) -> Path:
    """A user's source folder SRC/{real,fake}/ with a few images."""
    src = tmp_path / "src" / "victim"
    for cls in ("real", "fake"):
        (src / cls).mkdir(parents=True)
        for p in sorted((toy_dataset / cls).glob("*.png"))[:4]:
            shutil.copy(p, src / cls / p.name)
    return src


@pytest.mark.parametrize("where", ["same", "inside", "above"])
def test_import_never_writes_over_its_source(victim: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree(victim.parent)
    out = {"same": victim, "inside": victim / "dataset", "above": victim.parent}[where]
    assert main(["data", "import", str(victim), "--out", str(out), "--size", "32", "--overwrite"]) == 2
    _one_line_error(capsys, "overlaps the source folder")
    assert _tree(victim.parent) == before


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    (home / "thesis").mkdir(parents=True)
    (home / "thesis" / "draft.tex").write_text("chapter 1")
    assert main(["data", "synth", "--out", str(home), "--n", "16", "--size", "16", "--overwrite"]) == 2
    _one_line_error(capsys, "is not a dataset folder made by dfrobust")
    assert _tree(home) == {"thesis/draft.tex": b"chapter 1"}


def test_overwrite_replaces_only_a_dataset_with_nothing_else_in_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    synth = ["data", "synth", "--out", str(out), "--size", "16", "--overwrite"]
    assert main([*synth, "--n", "16"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*synth, "--n", "24"]) == 2
    _one_line_error(capsys, "holds files dfrobust did not make (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine" and len(read_manifest(out)["images"]) == 16
    (out / "notes.txt").unlink()
    assert main([*synth, "--n", "24"]) == 0  # its own dataset, made with other settings: replaced
    assert len(read_manifest(out)["images"]) == 24


def test_a_user_folder_named_like_the_partial_folder_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "x.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("keep")
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "16", "--size", "16"]) == 2
    _one_line_error(capsys, "x.partial exists and was not made by dfrobust")
    assert _tree(partial) == {"mine.txt": b"keep"}
    # a partial folder of an interrupted dfrobust run (it carries the marker) is replaced
    shutil.rmtree(partial)
    (partial / "real").mkdir(parents=True)
    (partial / ".dfrobust-partial").write_text("{}")  # data.manifest.PARTIAL_MARKER
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "16", "--size", "16"]) == 0
    assert not partial.exists() and not (tmp_path / "x" / ".dfrobust-partial").exists()


def test_train_refuses_to_replace_a_model_of_other_settings(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    train = ["train", "--data", str(toy_dataset), "--arch", "tiny", "--epochs", "1", "--batch-size", "16", "--no-amp",
             "--device", "cpu", "--val-fraction", "0", "--out", str(out)]  # fmt: skip
    assert main(train) == 0
    weights = out.read_bytes()
    capsys.readouterr()
    assert main([*train, "--lr", "0.01"]) == 2
    _one_line_error(capsys, "holds a model trained with other settings", "--overwrite")
    assert out.read_bytes() == weights
    assert main(train) == 0  # the same settings: nothing to do, nothing replaced
    assert out.read_bytes() == weights
    assert main([*train, "--lr", "0.01", "--overwrite"]) == 0
    assert out.read_bytes() != weights


def test_a_folder_where_a_file_is_expected_is_an_error(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _user_folder(tmp_path / "models.safetensors")  # a folder, whatever its name says
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(folder)]) == 2
    _one_line_error(capsys, "is a folder; give a model file")
    assert main(["train", "--data", str(toy_dataset), "--arch", "tiny", "--out", str(folder)]) == 2
    _one_line_error(capsys, "is a folder; give a file path")
    assert _tree(folder) == {"sub/a.csv": b"x\n"}


def test_attack_and_purify_do_not_write_into_a_foreign_folder(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.csv").write_text("my own results\n")
    attack = ["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "fgsm", "--max-images", "2",
              "--device", "cpu", "--out", str(results)]  # fmt: skip
    assert main(attack) == 2
    _one_line_error(capsys, "already holds other files")
    purify = ["purify", "--data", str(toy_dataset), "--model", str(toy_model), "--adv", str(tmp_path / "a"),
              "--out", str(results), "--iterations", "4"]  # fmt: skip
    assert main(purify) == 2
    _one_line_error(capsys, "already holds other files")
    assert _tree(results) == {"results.csv": b"my own results\n"}
    # its own output folder is reused (the rerun resumes)
    assert main([*attack[:-1], str(tmp_path / "a")]) == 0
    assert main([*attack[:-1], str(tmp_path / "a")]) == 0


def test_preview_of_a_new_dataset_is_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _user_folder(tmp_path / "sheets")
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "16", "--size", "16", "--preview", str(folder)]) == 2
    _one_line_error(capsys, "--preview", "is a folder")
    assert not (tmp_path / "d").exists() and _tree(folder) == {"sub/a.csv": b"x\n"}
