"""Tests of the attack stage: run_attack outputs, PNG round trip, transfer matrix, resume, shards, CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import dfrobust.studies.attack_run as experiment
from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.studies.attack_tables import RESULT_COLUMNS, table2_rows, table2_wide
from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.models.inference import p_real
from dfrobust.report.attack_figures import plot_fig3
from dfrobust.utils.io import load_image, read_csv, read_json, sha256_file

PGD = AttackConfig("pgd", {"eps": 0.1, "steps": 5}, batch_size=4, max_images=10, device="cpu")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.fixture(scope="module")
def models(toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two detectors: the toy model as ``tiny-a`` and a noisy copy of it as ``tiny-b`` (another model, made instantly)."""
    folder = tmp_path_factory.mktemp("attack-models")
    source = _copy_model(toy_model, folder / "tiny-a.safetensors")
    model, _ = load_detector(toy_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.2 * param.std().clamp_min(1e-3))
    other = save_detector(model, folder / "tiny-b.safetensors", {"input_size": [32, 32]})
    return source, other


@pytest.fixture(scope="module")
def reference_run(toy_dataset: Path, models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished PGD run (source a, targets a and b) with a JPEG evaluation beside."""
    out = tmp_path_factory.mktemp("attack-runs") / "fgsm"
    cfg = dataclasses.replace(PGD, jpeg_quality=75)
    run_attack(toy_dataset, models[0], list(models), cfg, out)
    return out


def _rows_without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(path)]


def test_config_fills_paper_defaults_and_serialises() -> None:
    cfg = AttackConfig("cw", {"kappa": 5})
    assert cfg.params == {
        "kappa": 5.0, "c_range": [100.0, 10000.0], "search_steps": 5, "max_steps": 1000, "lr": 0.01, "abort_early": True,
        "unreached": "min-l2",
    }  # fmt: skip
    assert json.loads(json.dumps(dataclasses.asdict(cfg)))["attack"] == "cw"
    assert AttackConfig("pgd", seed=7).params["seed"] == 7
    with pytest.raises(DfrobustError, match="--classes"):
        AttackConfig("fgsm", classes="faces")
    with pytest.raises(DfrobustError, match="no parameter"):
        AttackConfig("fgsm", {"steps": 3})


def test_run_writes_transfer_row_for_two_targets(reference_run: Path, models: tuple[Path, Path]) -> None:
    rows = read_csv(reference_run / "results.csv")
    assert list(rows[0])[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert len(rows) == 10 * 2
    assert {(r["target"], r["setting"]) for r in rows} == {("tiny-a", "whitebox"), ("tiny-b", "blackbox")}
    assert {r["label"] for r in rows} == {"0"} and {r["source"] for r in rows} == {"tiny-a"}
    assert all(r["success"] == str(int(r["adv_pred"] != r["label"])) for r in rows)
    assert {"jpeg_p_real", "jpeg_pred"} <= set(rows[0])  # beside, not instead of, the PNG evaluation
    # one success definition: ``success`` on the stored PNGs; the float verdict only under a name that says so
    assert "attack_success" not in rows[0] and all(r["success_float"] in ("0", "1") for r in rows)

    summary = read_json(reference_run / "summary.json")
    assert summary["complete"] and summary["config"]["attack"] == "pgd"
    assert summary["source"] == {"tiny-a": {"path": str(models[0]), "sha256": sha256_file(models[0])}}
    assert set(summary["targets"]) == {"tiny-a", "tiny-b"}
    for name, res in summary["results"].items():
        mine = [r for r in rows if r["target"] == name]
        assert res["perturbed_accuracy"] == sum(r["adv_pred"] == r["label"] for r in mine) / len(mine)
        assert res["clean_accuracy"] == sum(r["clean_pred"] == r["label"] for r in mine) / len(mine)
    assert summary["results"]["tiny-a"]["perturbed_accuracy"] < summary["results"]["tiny-a"]["clean_accuracy"]
    white = [r for r in rows if r["setting"] == "whitebox"]
    assert summary["crafting"]["success_rate"] == sum(r["success"] == "1" for r in white) / len(white)
    assert summary["crafting"]["success_float_rate"] == sum(r["success_float"] == "1" for r in white) / len(white)

    table = read_csv(reference_run / "table2.csv")
    assert [(r["model"], r["setting"]) for r in table] == [("tiny-a", "whitebox"), ("tiny-b", "blackbox")]
    assert "jpeg_accuracy" in table[0]
    assert not (reference_run / "fig3.png").exists()  # the stage writes data; the command and the report draw
    assert len(list((reference_run / "images" / "fake").glob("*.png"))) == 10


def test_saved_pngs_give_the_evaluated_predictions(reference_run: Path, toy_dataset: Path, models: tuple[Path, Path]) -> None:
    rows = [r for r in read_csv(reference_run / "results.csv") if r["target"] == "tiny-a"]
    model, _ = load_detector(models[0])
    adv = torch.stack([load_image(reference_run / "images" / r["image"]) for r in rows])
    clean = torch.stack([load_image(toy_dataset / r["image"]) for r in rows])
    scores = p_real(model, adv)
    assert torch.allclose(scores, torch.tensor([float(r["adv_p_real"]) for r in rows]), atol=1e-5)
    assert [int(s >= 0.5) for s in scores] == [int(r["adv_pred"]) for r in rows]
    l2 = (adv - clean).flatten(1).norm(dim=1)
    assert torch.allclose(l2, torch.tensor([float(r["l2"]) for r in rows]), atol=1e-4)
    assert all(float(r["linf"]) <= 0.1 + 1 / 255 for r in rows)  # eps 0.1, up to one 8-bit level


def test_interrupted_run_resumes_and_matches(
    reference_run: Path, toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dataclasses.replace(PGD, jpeg_quality=75)
    real_batch = experiment.attack_batch
    calls: list[int] = []

    def dying_after_two(cfg_: AttackConfig, batch: int, *args: object) -> list[dict]:
        calls.append(batch)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_batch(cfg_, batch, *args)

    monkeypatch.setattr(experiment, "attack_batch", dying_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_attack(toy_dataset, models[0], list(models), cfg, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "parts").iterdir()) == [
        "part-00000.csv",
        "part-00000.json",
        "part-00001.csv",
        "part-00001.json",
    ]
    assert not (tmp_path / "run" / "summary.json").exists()

    calls.clear()
    monkeypatch.setattr(experiment, "attack_batch", lambda *a: calls.append(a[1]) or real_batch(*a))
    summary = run_attack(toy_dataset, models[0], list(models), cfg, tmp_path / "run")
    assert calls == [2] and summary["complete"]  # 10 images in batches of 4: only the last batch was left
    assert _rows_without_time(tmp_path / "run" / "results.csv") == _rows_without_time(reference_run / "results.csv")

    calls.clear()
    run_attack(toy_dataset, models[0], list(models), cfg, tmp_path / "run")
    assert calls == []  # finished: nothing redone


def test_shards_merge_into_the_same_results(reference_run: Path, toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = dataclasses.replace(PGD, jpeg_quality=75)
    first = run_attack(toy_dataset, models[0], list(models), cfg, tmp_path / "run", rank=1, world_size=2)
    assert first == {"complete": False, "batches_done": 1, "batches_total": 3, "out_dir": str(tmp_path / "run"), "rank": 1, "world_size": 2}
    second = run_attack(toy_dataset, models[0], list(models), cfg, tmp_path / "run", rank=0, world_size=2)
    assert second["complete"]
    assert _rows_without_time(tmp_path / "run" / "results.csv") == _rows_without_time(reference_run / "results.csv")


def test_out_dir_of_another_run_is_refused(reference_run: Path, toy_dataset: Path, models: tuple[Path, Path]) -> None:
    with pytest.raises(DfrobustError, match="holds another attack run"):
        other = AttackConfig("pgd", {"eps": 0.05, "steps": 5}, batch_size=4, max_images=10)
        run_attack(toy_dataset, models[0], list(models), other, reference_run)


def test_new_targets_rescore_the_stored_images_without_crafting(
    reference_run: Path, toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dataclasses.replace(PGD, jpeg_quality=75)
    out = tmp_path / "run"
    run_attack(toy_dataset, models[0], [models[0]], cfg, out)  # whitebox only
    assert {r["target"] for r in read_csv(out / "results.csv")} == {"tiny-a"}
    for part in (out / "parts").glob("part-*.csv"):  # parts written before the float success was renamed
        part.write_text(part.read_text().replace("success_float", "attack_success"))
    crafted: list[int] = []
    real_batch = experiment.attack_batch
    monkeypatch.setattr(experiment, "attack_batch", lambda *a: crafted.append(a[1]) or real_batch(*a))
    summary = run_attack(toy_dataset, models[0], list(models), cfg, out)  # one more target
    assert crafted == [] and summary["complete"] and set(summary["targets"]) == {"tiny-a", "tiny-b"}
    # the same rows as a run that had both targets from the start
    assert _rows_without_time(out / "results.csv") == _rows_without_time(reference_run / "results.csv")


def test_other_crafting_is_refused_or_replaced(toy_dataset: Path, models: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_attack(toy_dataset, models[0], [models[0]], PGD, out)
    other = dataclasses.replace(PGD, params={**PGD.params, "eps": 0.05})
    with pytest.raises(DfrobustError, match="holds another attack run"):
        run_attack(toy_dataset, models[0], [models[0]], other, out)
    summary = run_attack(toy_dataset, models[0], [models[0]], other, out, replace=True)
    assert summary["complete"] and summary["attack"]["eps"] == 0.05
    linf = [float(r["linf"]) for r in read_csv(out / "results.csv")]
    assert len(linf) == 10 and max(linf) <= 0.05 + 1 / 255


def test_cw_run_records_search_columns(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    cfg = AttackConfig(
        "cw", {"kappa": 2.0, "c_range": (1.0, 100.0), "search_steps": 2, "max_steps": 40, "lr": 0.05}, max_images=4, device="cpu"
    )
    summary = run_attack(toy_dataset, toy_model, [], cfg, tmp_path / "cw")
    rows = read_csv(tmp_path / "cw" / "results.csv")
    assert len(rows) == 4 and {r["target"] for r in rows} == {"tiny"}
    assert all(1.0 <= float(r["c"]) <= 100.0 for r in rows if r["kappa_reached"] == "1")
    assert summary["crafting"]["kappa_reached_rate"] == sum(r["kappa_reached"] == "1" for r in rows) / 4
    assert summary["attack"]["kappa"] == 2.0


def _row(model: str, attack: str, setting: str, label: int, clean: int, adv: int) -> dict:
    return {
        "image": "fake/1.png", "label": label, "attack": attack, "source": "s", "target": model, "setting": setting,
        "clean_pred": clean, "adv_pred": adv, "l2": 1.0, "linf": 0.1, "psnr": 30.0, "ssim": 0.9, "success": int(adv != label),
        "seconds": 0.1,
    }  # fmt: skip


def test_table2_aggregates_rows_of_several_attacks(tmp_path: Path) -> None:
    rows = [
        _row("vgg", "fgsm", "whitebox", 0, 0, 1), _row("vgg", "fgsm", "whitebox", 0, 0, 1),
        _row("vgg", "fgsm", "whitebox", 0, 0, 0), _row("vgg", "fgsm", "whitebox", 0, 1, 1),
        _row("vgg", "cw", "blackbox", 0, 0, 1), _row("vgg", "cw", "blackbox", 0, 0, 0),
    ]  # fmt: skip
    as_strings = [{k: str(v) for k, v in r.items()} for r in rows]  # as read back from results.csv
    table = table2_rows(as_strings)
    assert [(r["attack"], r["setting"], r["n"]) for r in table] == [("cw", "blackbox", 2), ("fgsm", "whitebox", 4)]
    assert table[1]["clean_accuracy"] == 0.75 and table[1]["perturbed_accuracy"] == 0.25
    assert table[0]["perturbed_accuracy"] == 0.5 and table[0]["images"] == "fake"
    wide = table2_wide(table)
    assert wide == [{"model": "vgg", "unperturbed": 0.75, "cw_blackbox": 0.5, "fgsm_whitebox": 0.25}]
    assert plot_fig3(table, tmp_path / "fig.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_runs_and_explains_bad_models(toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "pgd", "--steps", "2",
                 "--max-images", "4", "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    assert "whitebox" in capsys.readouterr().out
    assert read_csv(out / "results.csv")[0]["attack"] == "pgd-linf"
    assert (out / "fig3.png").read_bytes()[:8] == PNG_MAGIC

    base = ["attack", "--data", str(toy_dataset), "--attack", "fgsm", "--out", str(tmp_path / "x")]
    assert main(base + ["--source", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err

    model, _ = load_detector(toy_model)
    wrong_size = save_detector(model, tmp_path / "big.safetensors", {"input_size": [64, 64]})
    assert main(base + ["--source", str(toy_model), "--target", str(wrong_size)]) == 2
    assert "trained on 64x64 images but the data is 32x32" in capsys.readouterr().err

    other_arch = tmp_path / "resnet.safetensors"
    _copy_model(toy_model, other_arch)
    side = json.loads(other_arch.with_suffix(".json").read_text())
    other_arch.with_suffix(".json").write_text(json.dumps({**side, "arch": "resnet18"}))
    assert main(base + ["--source", str(other_arch)]) == 2
    assert "says arch 'resnet18' but the weights in resnet.safetensors were saved with 'tiny'" in capsys.readouterr().err

    assert main(base + ["--source", str(toy_model), "--kappa", "5"]) == 2
    assert "--kappa is a parameter of cw" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    assert "examples:" in capsys.readouterr().out
