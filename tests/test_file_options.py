"""No option overwrites a file dfrobust did not write, and models and datasets are checked before use (issue 21)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.utils.io import read_json, sha256_file, write_json


def _first_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[0] if err else ""


def _copy_data(toy_dataset: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(toy_dataset, data)
    return data


def _copy_model(toy_model: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(toy_model, dest)
    shutil.copy(toy_model.with_suffix(".json"), dest.with_suffix(".json"))
    return dest


def test_evaluate_json_never_replaces_a_file_it_did_not_write(toy_dataset: Path, toy_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data = _copy_data(toy_dataset, tmp_path)
    model = _copy_model(toy_model, tmp_path / "models" / "m.safetensors")
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    cases = [data / "manifest.json", model.with_suffix(".json"), notes, next((data / "fake").iterdir())]
    before = {p: p.read_bytes() for p in cases}
    for target in cases:
        assert main(["evaluate", "--data", str(data), "--model", str(model), "--json", str(target), "--device", "cpu"]) == 2
        assert "--json" in _first_line(capsys)
    assert {p: p.read_bytes() for p in cases} == before
    load_detector(model)  # the model still loads
    out = tmp_path / "eval.json"
    for _ in range(2):  # its own file is replaced on a second run
        assert main(["evaluate", "--data", str(data), "--model", str(model), "--json", str(out), "--device", "cpu"]) == 0
    assert read_json(out)["written_by"] == "evaluate"


def test_evaluate_checks_image_hashes(toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy_data(toy_dataset, tmp_path)
    img = next((data / "real").iterdir())
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(img)
    assert main(["evaluate", "--data", str(data), "--model", str(toy_model), "--device", "cpu"]) == 2
    assert "sha256" in _first_line(capsys)


def test_preview_options_replace_only_contact_sheets(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy_data(toy_dataset, tmp_path)
    photo = tmp_path / "holiday.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(photo)
    image = next((data / "real").iterdir())
    before = {p: p.read_bytes() for p in (photo, image, data / "manifest.json")}
    for target in (photo, image, data / "manifest.json"):
        assert main(["data", "preview", str(data), "--out", str(target)]) == 2
        assert "--out" in _first_line(capsys)
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "8", "--size", "16", "--preview", str(photo)]) == 2
    assert "--preview" in _first_line(capsys) and not (tmp_path / "s").exists()
    assert (
        main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "8", "--size", "16", "--preview", str(tmp_path / "s" / "p.png")]) == 2
    )
    assert {p: p.read_bytes() for p in before} == before
    sheet = tmp_path / "sheet.png"
    assert main(["data", "preview", str(data), "--out", str(sheet)]) == 0
    assert main(["data", "preview", str(data), "--out", str(sheet)]) == 0  # a contact sheet it wrote may be replaced


def test_train_overwrite_replaces_only_models(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"thesis": "chapter 1"}')
    code = main(["train", "--data", str(toy_dataset), "--arch", "tiny", "--epochs", "1", "--out", str(tmp_path / "notes.safetensors"),
                 "--overwrite", "--device", "cpu"])  # fmt: skip
    assert code == 2 and "not a dfrobust model" in _first_line(capsys)
    assert notes.read_text() == '{"thesis": "chapter 1"}'
    assert not (tmp_path / "notes.safetensors").exists()


def test_purify_out_adopts_only_its_own_folder(toy_dataset: Path, toy_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    adv = tmp_path / "adv"
    assert main(["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "fgsm", "--out", str(adv),
                 "--max-images", "4", "--device", "cpu"]) == 0  # fmt: skip
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("words")
    (thesis / "summary.json").write_text('{"chapter": 1}')
    common = ["purify", "--data", str(toy_dataset), "--model", str(toy_model), "--adv", str(adv), "--per-category", "1",
              "--iterations", "4", "--classify-at", "2", "--device", "cpu"]  # fmt: skip
    before = {p.name: p.read_bytes() for p in thesis.iterdir()}
    assert main([*common, "--out", str(thesis)]) == 2
    assert "--out" in _first_line(capsys)
    assert {p.name: p.read_bytes() for p in thesis.iterdir()} == before  # no plan.json written either
    adv_files = {p.name: p.read_bytes() for p in adv.iterdir() if p.is_file()}
    assert main([*common, "--out", str(adv)]) == 2  # the attack's own folder is not purify's
    assert {p.name: p.read_bytes() for p in adv.iterdir() if p.is_file()} == adv_files


def test_identical_models_hash_identically(toy_model: Path, tmp_path: Path) -> None:
    model, meta = load_detector(toy_model)
    a = save_detector(model, tmp_path / "a.safetensors", {"input_size": meta["input_size"]})
    b = save_detector(model, tmp_path / "b.safetensors", {"input_size": meta["input_size"]})
    assert sha256_file(a) == sha256_file(b)
    load_detector(a)


def test_sidecar_build_fields_are_covered_by_the_hash(toy_model: Path, tmp_path: Path) -> None:
    model, meta = load_detector(toy_model)
    path = save_detector(model, tmp_path / "m.safetensors", {"input_size": meta["input_size"]})
    side = read_json(path.with_suffix(".json"))
    write_json(path.with_suffix(".json"), {**side, "activation": "halfhuber"})
    with pytest.raises(DfrobustError, match="activation"):
        load_detector(path)


def test_nan_weights_are_one_line(toy_model: Path, toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    model, meta = load_detector(toy_model)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = save_detector(model, tmp_path / "nan.safetensors", {"input_size": meta["input_size"]})
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(path), "--device", "cpu"]) == 2
    assert "NaN" in _first_line(capsys)
