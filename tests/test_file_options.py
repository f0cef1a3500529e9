"""Issue 21, items 3, 4, 5, 6 and 7: no option overwrites a file dfrobust did not write, and what
a command reads is what dfrobust wrote.

Each test holds a sentinel (a file that must survive unchanged) or the exit code and first line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.models.detectors import build_detector
from dfrobust.utils.io import read_json, write_json


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def data(toy_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the toy dataset (tests here try to damage it)."""
    return Path(shutil.copytree(toy_dataset, tmp_path / "data"))


@pytest.fixture()
def model(toy_model: Path, tmp_path: Path) -> Path:
    """A private copy of the toy model and its sidecar."""
    (tmp_path / "m").mkdir()
    shutil.copy(toy_model, tmp_path / "m" / toy_model.name)
    shutil.copy(toy_model.with_suffix(".json"), tmp_path / "m" / toy_model.with_suffix(".json").name)
    return tmp_path / "m" / toy_model.name


# --- item 3: file options ------------------------------------------------------------------------


def _evaluate(data: Path, model: Path, out: Path) -> list[str]:
    return ["evaluate", "--data", str(data), "--model", str(model), "--json", str(out), "--device", "cpu", "--no-gradients"]


def test_evaluate_json_never_replaces_a_manifest_a_sidecar_or_a_users_file(data: Path, model: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    image = next((data / "test" / "fake").iterdir()) if (data / "test").is_dir() else next(data.rglob("*.png"))
    for target in (data / "manifest.json", model.with_suffix(".json"), notes, image):
        before = _digest(target)
        assert main(_evaluate(data, model, target)) == 2
        assert _error(capsys.readouterr().err).startswith(f"error: --json {target}")
        assert _digest(target) == before
    load_detector(model)  # the model still loads
    out = tmp_path / "results.json"
    assert main(_evaluate(data, model, out)) == 0  # a new file, then its own earlier file, are fine
    assert main(_evaluate(data, model, out)) == 0 and "models" in read_json(out)


def test_data_preview_out_never_replaces_a_dataset_file(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = next(data.rglob("*.png"))
    user = tmp_path / "holiday.png"
    user.write_bytes(b"not a preview")
    for target in (image, data / "manifest.json", user):
        before = _digest(target)
        assert main(["data", "preview", str(data), "--out", str(target)]) == 2
        assert _error(capsys.readouterr().err).startswith(f"error: --out {target}")
        assert _digest(target) == before
    sheet = tmp_path / "sheet.png"
    assert main(["data", "preview", str(data), "--out", str(sheet), "--per-class", "2"]) == 0
    assert main(["data", "preview", str(data), "--out", str(sheet), "--per-class", "2"]) == 0  # its own sheet


def test_data_synth_preview_never_replaces_a_users_file_or_one_inside_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "thesis.txt"
    user.write_text("years of work")
    args = ["data", "synth", "--out", str(tmp_path / "ds"), "--n", "8", "--size", "16"]
    assert main([*args, "--preview", str(user)]) == 2
    assert _error(capsys.readouterr().err).startswith(f"error: --preview {user}")
    assert user.read_text() == "years of work" and not (tmp_path / "ds").exists()
    assert main([*args, "--preview", str(tmp_path / "ds" / "manifest.json")]) == 2
    assert "inside the dataset folder" in _error(capsys.readouterr().err) and not (tmp_path / "ds").exists()


def test_train_overwrite_replaces_only_a_dfrobust_model(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}')
    out = tmp_path / "notes.safetensors"
    assert main(["train", "--data", str(data), "--arch", "tiny", "--out", str(out), "--epochs", "1", "--overwrite", "--device", "cpu"]) == 2
    first = _error(capsys.readouterr().err)
    assert first.startswith(f"error: {notes} exists and is not a dfrobust model sidecar")
    assert notes.read_text() == '{"my": "notes"}' and not out.exists()


# --- item 4: purify --out -------------------------------------------------------------------------


def test_purify_out_never_takes_over_a_folder_it_did_not_make(data: Path, model: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from dip_helpers import make_attack_folder

    adv = make_attack_folder(tmp_path / "fgsm-wb", data, model, "fgsm", "whitebox")
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "summary.json").write_text('{"chapter": 1}')
    (mine / "thesis.txt").write_text("text")
    for out in (mine, adv):
        before = {p.name: _digest(p) for p in out.iterdir() if p.is_file()}
        args = ["purify", "--data", str(data), "--model", str(model), "--adv", str(adv), "--out", str(out), "--device", "cpu",
                "--iterations", "4", "--classify-at", "2", "--per-category", "1"]  # fmt: skip
        assert main(args) == 2
        assert _error(capsys.readouterr().err).startswith(f"error: --out {out}")
        assert {p.name: _digest(p) for p in out.iterdir() if p.is_file()} == before  # nothing written (no plan.json)


def test_own_folder_rule_with_content_checks(tmp_path: Path) -> None:
    from dfrobust.utils.io import require_own_folder

    checks = {"summary.json": lambda p: "merge_key" in read_json(p)}
    own = tmp_path / "own"
    own.mkdir()
    write_json(own / "summary.json", {"merge_key": 1})
    (own / "table.csv").write_text("x")
    assert require_own_folder(own, checks) == own  # its own marker: adopted
    assert require_own_folder(tmp_path / "new", checks) == tmp_path / "new"
    other = tmp_path / "other"
    other.mkdir()
    write_json(other / "summary.json", {"attack": "fgsm"})
    with pytest.raises(DfrobustError, match="holds a summary.json this command did not write"):
        require_own_folder(other, checks)


# --- item 5: integrity ----------------------------------------------------------------------------


def test_evaluate_checks_image_hashes(data: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted(data.rglob("*.png"))[-1]
    image.write_bytes(image.read_bytes()[:-8] + b"\x00" * 8)  # damaged in place
    assert main(["evaluate", "--data", str(data), "--model", str(model), "--device", "cpu", "--no-gradients", "--split", "all"]) == 2
    assert "missing or changed" in _error(capsys.readouterr().err)


def test_sidecar_build_fields_are_checked_against_the_weights(model: Path) -> None:
    side = model.with_suffix(".json")
    meta = read_json(side)
    write_json(side, {**meta, "activation": "halfhuber"})
    with pytest.raises(DfrobustError, match="says activation 'halfhuber' but the weights"):
        load_detector(model)
    write_json(side, {k: v for k, v in meta.items() if k != "weights_sha256"})
    with pytest.raises(DfrobustError, match="has no weights_sha256"):
        load_detector(model)


def test_identical_models_have_identical_hashes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_detector("tiny", num_classes=2)
    digests = set()
    for i in range(6):  # the library's metadata order varies from save to save
        path = save_detector(net, tmp_path / f"m{i}.safetensors", {"input_size": [32, 32], "versions": {"x": "1"}})
        digests.add(_digest(path))
    assert len(digests) == 1
    load_detector(tmp_path / "m0.safetensors")


def test_nan_weights_are_a_one_line_error(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = build_detector("tiny", num_classes=2)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    path = save_detector(net, tmp_path / "nan.safetensors", {"input_size": [32, 32]})
    assert main(["evaluate", "--data", str(data), "--model", str(path), "--device", "cpu", "--no-gradients"]) == 2
    assert "NaN or infinite weights" in _error(capsys.readouterr().err)


def test_nan_scores_are_a_one_line_error() -> None:
    from dfrobust.evaluate.metrics import detection_metrics

    with pytest.raises(DfrobustError, match="NaN or infinite score"):
        detection_metrics([0, 1], [float("nan"), 0.5])


# --- item 6: checks before work -------------------------------------------------------------------


def test_card_check_when_the_factory_exits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "exiting_det_mod.py").write_text("import sys\n\ndef build():\n    sys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    card = tmp_path / "c.toml"
    card.write_text('source = "python:exiting_det_mod:build"\nnormalization = "none"\noutput = "logits"\nfake_index = 0\n')
    assert main(["card", "check", str(card)]) == 2
    assert "called sys.exit(0)" in _error(capsys.readouterr().err)


def test_a_huge_card_input_size_is_refused(tmp_path: Path, toy_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "big.toml"
    card.write_text('source = "torchvision:resnet18"\nnormalization = "imagenet"\noutput = "logits"\nfake_index = 0\n'
                    "input_size = [100000, 100000]\n")  # fmt: skip
    assert main(["card", "check", str(card)]) == 2
    assert "`input_size` must be [H, W]" in _error(capsys.readouterr().err)


def test_data_synth_size_too_large_before_allocating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "ds"), "--n", "8", "--size", "100000"]) == 2
    assert _error(capsys.readouterr().err).startswith("error: --size 100000 is larger than")
    assert not (tmp_path / "ds").exists()


# --- item 7 ---------------------------------------------------------------------------------------


def test_report_refuses_while_the_run_is_locked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dfrobust.utils.runlock import run_lock

    run = tmp_path / "R"
    with run_lock(run):
        assert main(["report", str(run)]) == 2
    assert "is in use by" in _error(capsys.readouterr().err)
    assert not (run / "report").exists()


def test_pth_error_does_not_advise_weights_only_false(tmp_path: Path) -> None:
    from dfrobust.models.weights import load_state_dict_file

    path = tmp_path / "w.pth"
    torch.save({"obj": Path("x")}, path)  # a pickle that needs a class: torch's message suggests weights_only=False
    with pytest.raises(DfrobustError) as info:
        load_state_dict_file(path)
    assert "weights_only=False" not in str(info.value) and "never unpickles" in str(info.value)


def test_card_help_and_readme_say_python_sources_run_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["card", "--help"])
    assert "runs whatever code" in capsys.readouterr().out.replace("\n", " ")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "is code that runs" in readme.replace("\n", " ")


def test_summary_markdown_is_html_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name holding HTML (a card named ``<script>``) reaches summary.md, which the README copies, escaped."""
    import dfrobust.report.render as render

    monkeypatch.setattr(render, "collect", lambda run_dir: {"cfg": {"run": {"preset": "t"}}})
    monkeypatch.setattr(render, "build_sections", lambda ctx, figs: ([], {}))
    monkeypatch.setattr(render, "summary_markdown", lambda ctx, results: "| <script>alert(1)</script> & co |\n")
    out = render.write_report(tmp_path / "R")
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
