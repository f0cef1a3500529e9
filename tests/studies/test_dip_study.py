"""The DIP study: category sampling, attack folders, Tables III/IV and the sweep, end to end through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dip_helpers import make_attack_folder

from dfrobust.cli import main
from dfrobust.data.manifest import manifest_hash
from dfrobust.defenses.dip import DipConfig
from dfrobust.defenses.dip_sampling import AttackFolder, category_candidates, read_attack_folder, sample_categories
from dfrobust.studies.dip_tables import sweep_points, sweep_rows, table3_rows, table4_rows, window_mean
from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import read_csv, read_json


@pytest.fixture(scope="module")
def attack_dirs(toy_dataset: Path, toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("attacks")
    return [
        make_attack_folder(root / "fgsm-wb", toy_dataset, toy_model, "fgsm", "whitebox"),
        make_attack_folder(root / "cw-bb", toy_dataset, toy_model, "cw", "blackbox"),
    ]


def test_category_sampler_on_a_hand_made_set() -> None:
    paths = [f"fake/{i:02d}.png" for i in range(8)] + [f"real/{i:02d}.png" for i in range(4)]
    labels = [0] * 8 + [1] * 4
    clean_ok = [True] * 7 + [False] + [True, True, True, False]  # fake/07 and real/03 are wrong when clean
    atk = AttackFolder(Path("a"), "fgsm-whitebox", "m", [f"fake/{i:02d}.png" for i in range(8)])
    adv = {"fgsm-whitebox": {p: (0.9 if i < 3 or i == 7 else 0.1) for i, p in enumerate(atk.images)}}
    cands = category_candidates(paths, labels, clean_ok, [atk], adv)
    assert list(cands) == ["fgsm-whitebox/fake-wrong", "fgsm-whitebox/fake-correct", "clean/fake-correct", "clean/real-correct"]
    assert cands["fgsm-whitebox/fake-wrong"] == ["fake/00.png", "fake/01.png", "fake/02.png"]  # not fake/07: wrong when clean
    assert cands["fgsm-whitebox/fake-correct"] == [f"fake/{i:02d}.png" for i in range(3, 7)]
    assert cands["clean/real-correct"] == ["real/00.png", "real/01.png", "real/02.png"]

    plan = sample_categories(cands, per_category=2, seed=5)
    assert plan.chosen == sample_categories(cands, per_category=2, seed=5).chosen  # seeded
    assert all(len(v) == 2 and set(v) <= set(cands[c]) for c, v in plan.chosen.items())
    big = sample_categories(cands, per_category=4, seed=5)  # two categories have only 3 candidates: all taken
    assert {c: len(v) for c, v in big.chosen.items()} == {
        "fgsm-whitebox/fake-wrong": 3,
        "fgsm-whitebox/fake-correct": 4,
        "clean/fake-correct": 4,
        "clean/real-correct": 3,
    }
    assert any("only 3 candidate" in n for n in big.notes)
    draws = {tuple(sample_categories(cands, 2, s).chosen["clean/fake-correct"]) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    # a category's draw does not depend on the other categories
    alone = sample_categories({"clean/fake-correct": cands["clean/fake-correct"]}, 2, 5)
    assert alone.chosen["clean/fake-correct"] == plan.chosen["clean/fake-correct"]


def test_attack_folder_rows_are_matched_to_the_classifier(
    tmp_path: Path, toy_dataset: Path, toy_model: Path, attack_dirs: list[Path]
) -> None:
    atk = read_attack_folder(attack_dirs[0], toy_model)
    assert atk.name == "fgsm-whitebox" and atk.target == "tiny" and len(atk.images) == 24
    # a folder that names the model differently is matched by its sha256
    renamed = make_attack_folder(tmp_path / "renamed", toy_dataset, toy_model, "cw", "whitebox", target="resnet-blur")
    assert read_attack_folder(renamed, toy_model).target == "resnet-blur"
    # no sha256 match and another name: a one-line error that says what to do
    foreign = make_attack_folder(tmp_path / "foreign", toy_dataset, toy_model, "cw", "whitebox", target="vgg", sha256="1" * 64)
    with pytest.raises(DfrobustError, match="no results for tiny.*--target"):
        read_attack_folder(foreign, toy_model)
    with pytest.raises(DfrobustError, match="not an attack output folder"):
        read_attack_folder(tmp_path, toy_model)
    other_data = make_attack_folder(tmp_path / "other-data", toy_dataset, toy_model, "fgsm", "whitebox", manifest="f" * 64)
    with pytest.raises(DfrobustError, match="another dataset"):
        read_attack_folder(other_data, toy_model, manifest=manifest_hash(toy_dataset))


def test_tables_on_hand_made_predictions() -> None:
    categories = (
        ["fgsm-whitebox/fake-wrong"] * 2 + ["fgsm-whitebox/fake-correct"] * 2 + ["clean/fake-correct"] * 2 + ["clean/real-correct"] * 2
    )
    labels = [0, 0, 0, 0, 0, 0, 1, 1]
    scores = {
        "baseline": [0.9, 0.8, 0.1, 0.2, 0.1, 0.1, 0.9, 0.9],
        "dip": [0.3, 0.1, 0.1, 0.2, 0.4, 0.1, 0.9, 0.2],
    }
    t3 = {(r["method"], r["threshold"]): r for r in table3_rows(labels, scores, (0.5, 0.25))}
    # dip @ 0.5: fakes all < 0.5 (6/6 right), reals 0.9 right, 0.2 wrong -> 7/8
    assert t3[("dip", 0.5)]["accuracy"] == pytest.approx(7 / 8)
    assert t3[("dip", 0.5)]["real_recall"] == pytest.approx(0.5) and t3[("dip", 0.5)]["fake_recall"] == pytest.approx(1.0)
    assert t3[("dip", 0.5)]["fake_precision"] == pytest.approx(6 / 7)
    # dip @ 0.25: 0.3 and 0.4 become real (2 fakes wrong), 0.2 real is wrong -> 5/8
    assert t3[("dip", 0.25)]["accuracy"] == pytest.approx(5 / 8)
    assert t3[("dip", 0.25)]["real_precision"] == pytest.approx(1 / 3)
    assert t3[("baseline", 0.5)]["accuracy"] == pytest.approx(6 / 8)
    assert t3[("dip", 0.5)]["auroc"] == pytest.approx(t3[("dip", 0.25)]["auroc"])

    t4 = {r["category"]: r for r in table4_rows(categories, labels, scores, (0.5, 0.25), requested=2)}
    assert t4["fgsm-whitebox/fake-wrong"]["baseline@0.5"] == 0.0 and t4["fgsm-whitebox/fake-wrong"]["dip@0.5"] == 1.0
    assert t4["fgsm-whitebox/fake-wrong"]["dip@0.25"] == 0.5
    assert t4["clean/fake-correct"]["dip@0.25"] == 0.5 and t4["clean/real-correct"]["dip@0.5"] == 0.5
    assert t4["perturbed/fake-wrong"]["n"] == 2 and t4["all-but-fake-wrong"]["n"] == 6
    assert t4["all"]["dip@0.5"] == pytest.approx(7 / 8) and t4["all"]["requested"] == ""
    assert t4["clean/real-correct"]["requested"] == 2
    # a category the study could not fill still gets its row
    empty = table4_rows(categories, labels, scores, (0.5,), requested=2, order=["cw-blackbox/fake-wrong"])
    assert empty[0]["category"] == "cw-blackbox/fake-wrong" and empty[0]["n"] == 0 and np.isnan(empty[0]["dip@0.5"])


def test_window_average_and_sweep_of_t() -> None:
    v = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    w = window_mean(v, window=4)  # samples i-2 .. i+1
    np.testing.assert_allclose(w[0], [0.5, 1.0, 1.5, 2.5, 3.5, 4.0])  # the last one averages 3, 4, 5
    assert sweep_points(10_000, 10_000, 10) == list(range(2500, 7501, 500))
    assert sweep_points(100, 60, 5) == [25, 30, 35, 40, 45, 50, 55, 60]  # scaled, cut at the last iteration run
    curves = {"dip": np.array([[0.9, 0.2], [0.1, 0.8]])}
    rows = sweep_rows([10, 20], [0, 1], curves, [10, 20, 30], (0.5,))
    assert [(r["iteration"], r["dip@0.5"]) for r in rows] == [(10, 0.0), (20, 1.0)]


def _purify_args(data: Path, model: Path, advs: list[Path], out: Path, *extra: str) -> list[str]:
    return ["purify", "--data", str(data), "--model", str(model), "--adv", *map(str, advs), "--out", str(out), "--device", "cpu", *extra]


def test_purify_end_to_end_through_the_cli(
    tmp_path: Path, toy_dataset: Path, toy_model: Path, attack_dirs: list[Path], capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "dip"
    args = _purify_args(
        toy_dataset,
        toy_model,
        attack_dirs,
        out,
        "--per-category",
        "1",
        "--iterations",
        "10",
        "--stop-at",
        "8",
        "--classify-at",
        "6",
        "--record-every",
        "2",
        "--batch-size",
        "4",
    )
    assert main(args) == 0
    for name in ("trajectories.csv", "table3.csv", "table4.csv", "sweep.csv", "fig5.png", "fig6.png", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = read_json(out / "summary.json")
    assert summary["complete"] and summary["n_images"] == 6 and summary["classify_at"] == 6 and summary["iterations_run"] == 8
    cats = set(summary["categories"])
    assert cats == {
        "fgsm-whitebox/fake-wrong",
        "fgsm-whitebox/fake-correct",
        "cw-blackbox/fake-wrong",
        "cw-blackbox/fake-correct",
        "clean/fake-correct",
        "clean/real-correct",
    }
    traj = read_csv(out / "trajectories.csv")
    assert list(traj[0]) == ["image", "category", "iteration", "p_real_raw", "p_real_avg", "mse_input", "psnr_input", "psnr_clean"]
    per_image = {r["image"] + r["category"]: [] for r in traj}
    for r in traj:
        per_image[r["image"] + r["category"]].append(int(r["iteration"]))
    assert len(per_image) == 6 and all(max(its) == 8 and 6 in its for its in per_image.values())
    # Table III's dip rows are the recorded P(real) at T, scored at both thresholds
    preds = read_csv(out / "predictions.csv")
    at_t = {(r["image"], r["category"]): float(r["p_real_raw"]) for r in traj if r["iteration"] == "6"}
    assert all(float(p["dip_p_real"]) == pytest.approx(at_t[(p["image"], p["category"])]) for p in preds)
    t3 = read_csv(out / "table3.csv")
    assert {(r["method"], r["threshold"]) for r in t3} >= {
        ("baseline", "0.5"),
        ("dip", "0.5"),
        ("dip", "0.25"),
        ("jpeg", "0.5"),
        ("blur", "0.25"),
    }
    labels = {p["category"]: p["label"] for p in preds}
    assert labels["clean/real-correct"] == "real" and labels["cw-blackbox/fake-wrong"] == "fake"
    baseline = {p["category"]: float(p["baseline_p_real"]) for p in preds}
    assert baseline["fgsm-whitebox/fake-wrong"] >= 0.5 > baseline["fgsm-whitebox/fake-correct"]
    assert "dip" in capsys.readouterr().out

    # a rerun resumes: finished batches are not purified again
    parts = sorted((out / "parts").glob("part-*.json"))
    assert len(parts) == 2
    stamps = [p.stat().st_mtime_ns for p in parts]
    plan_stamp = (out / "plan.json").stat().st_mtime_ns
    (out / "summary.json").unlink()
    parts[1].unlink()  # as if the run was killed during the second batch
    assert main(args) == 0
    assert parts[0].stat().st_mtime_ns == stamps[0] and parts[1].is_file()
    assert (out / "plan.json").stat().st_mtime_ns == plan_stamp  # the sample was reused, not drawn again
    assert read_json(out / "summary.json")["table3"] == summary["table3"]
    # another T on the recording grid re-merges the tables without purifying anything
    stamps = [p.stat().st_mtime_ns for p in sorted((out / "parts").glob("part-*.json"))]
    other_t = list(args)
    other_t[other_t.index("--classify-at") + 1] = "4"
    assert main(other_t) == 0
    assert read_json(out / "summary.json")["classify_at"] == 4
    assert [p.stat().st_mtime_ns for p in sorted((out / "parts").glob("part-*.json"))] == stamps


def test_ranks_split_the_batches_and_the_last_one_merges(
    tmp_path: Path, toy_dataset: Path, toy_model: Path, attack_dirs: list[Path]
) -> None:
    dip = DipConfig(iterations=4, record_every=2, channels_down=(4, 8), channels_up=(4, 8), channels_skip=(0, 2), input_channels=6)
    cfg = DipStudyConfig(dip=dip, per_category=1, batch_size=2, device="cpu")
    first = run_dip_study(toy_dataset, toy_model, attack_dirs[:1], tmp_path, cfg, rank=0, world_size=2)
    assert first["complete"] is False and first["missing_images"] > 0
    assert not (tmp_path / "table3.csv").exists()
    assert len(list((tmp_path / "parts").glob("*.json"))) == 1  # 4 images in 2 batches: one each
    second = run_dip_study(toy_dataset, toy_model, attack_dirs[:1], tmp_path, cfg, rank=1, world_size=2)
    assert second["complete"] and second["n_images"] == 4 and (tmp_path / "table4.csv").is_file()


def test_purify_user_errors_are_one_line(
    tmp_path: Path, toy_dataset: Path, toy_model: Path, attack_dirs: list[Path], capsys: pytest.CaptureFixture
) -> None:
    assert main(_purify_args(toy_dataset, toy_model, [tmp_path / "missing"], tmp_path / "o")) == 2
    assert "not an attack output folder" in capsys.readouterr().err
    assert (
        main(
            _purify_args(toy_dataset, toy_model, attack_dirs, tmp_path / "o", "--iterations", "20", "--stop-at", "5", "--classify-at", "10")
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--classify-at 10" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "o" / "parts")
    assert main(_purify_args(toy_dataset, toy_model, attack_dirs, tmp_path / "o", "--early-stop", "--es-window", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "es_window" in err and len(err.strip().splitlines()) == 1


def test_purify_reads_a_folder_in_place_at_mixed_sizes(tmp_path: Path, toy_dataset: Path, toy_model: Path) -> None:
    """A 0_real/1_fake folder, most fakes at 64 px (so they are attacked at 64) and the rest at 32 (so DIP fits 32)."""
    import torch.nn.functional as F

    from dfrobust.data.dataset import load_split
    from dfrobust.utils.io import save_png

    folder = tmp_path / "mine"
    test = load_split(toy_dataset, "test")
    fakes, reals = [i for i in range(len(test)) if int(test.y[i]) == 0][:6], [i for i in range(len(test)) if int(test.y[i]) == 1][:6]
    for k, i in enumerate(fakes):
        x = test.images([i])
        save_png(folder / "1_fake" / f"{k}.png", (F.interpolate(x, scale_factor=2, mode="nearest") if k < 4 else x)[0])
    for k, i in enumerate(reals):
        save_png(folder / "0_real" / f"{k}.png", test.images([i])[0])
    before = sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    card = tmp_path / "toy.toml"
    card.write_text(f'source = "dfrobust:{toy_model}"\nname = "toy"\n')
    adv = tmp_path / "fgsm"
    assert main(["attack", "--data", str(folder), "--source", str(card), "--attack", "fgsm", "--out", str(adv), "--device", "cpu"]) == 0
    assert read_json(adv / "summary.json")["dataset"]["image_size"] == [64, 64]
    out = tmp_path / "dip"
    args = _purify_args(
        folder,
        card,
        [adv],
        out,
        "--per-category",
        "1",
        "--iterations",
        "6",
        "--classify-at",
        "4",
        "--record-every",
        "2",
        "--batch-size",
        "8",
        "--no-transforms",
    )
    assert main(args) == 0
    summary = read_json(out / "summary.json")
    assert summary["complete"] and summary["categories"]["clean/real-correct"]["n"] == 1
    preds = read_csv(out / "predictions.csv")
    assert {p["image"].split("/")[0] for p in preds} == {"0_real", "1_fake"}  # the folder's own image ids
    assert any(p["source"] == "fgsm-whitebox" for p in preds)  # an attacked 64 px fake, fitted beside its 32 px clean image
    assert any("resized to 32x32" in n for n in summary["notes"])
    assert sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before  # nothing written into it


def test_the_study_scores_early_stopping_beside_the_fixed_t(
    tmp_path: Path, toy_dataset: Path, toy_model: Path, attack_dirs: list[Path], capsys: pytest.CaptureFixture
) -> None:
    small = {"channels_down": (4, 8), "channels_up": (4, 8), "channels_skip": (0, 2), "input_channels": 6}
    dip = DipConfig(iterations=30, record_every=10, early_stop=True, es_window=3, es_patience=2, **small)
    cfg = DipStudyConfig(dip=dip, per_category=1, classify_at=20, batch_size=4, device="cpu", transforms=False)
    summary = run_dip_study(toy_dataset, toy_model, attack_dirs[:1], tmp_path / "es", cfg)
    rows = read_csv(tmp_path / "es" / "predictions.csv")
    assert {"dip-es_p_real", "es_iteration", "es_stopped_at", "psnr_clean_at_es"} <= set(rows[0])
    for r in rows:  # the kept iteration lies in the run; an image stops exactly `patience` iterations after it
        assert 3 <= int(r["es_iteration"]) <= 30 and int(r["es_stopped_at"]) in (0, int(r["es_iteration"]) + 2)
    assert any(int(r["es_stopped_at"]) for r in rows)
    assert "dip-es" in {r["method"] for r in summary["table3"]}
    es = summary["early_stop"]
    assert es["n"] == len(rows) and es["window"] == 3 and es["patience"] == 2 and 0 <= es["stopped"] <= es["n"]
    assert summary["iterations_run"] == 30  # the run went to the end: T and the sweep need the whole trajectory
    # the command: the same study, its summary line
    small_args = ["--iterations", "12", "--classify-at", "8", "--record-every", "4", "--per-category", "1", "--no-transforms"]
    es_args = ["--early-stop", "--es-window", "3", "--es-patience", "2"]
    assert main(_purify_args(toy_dataset, toy_model, attack_dirs[:1], tmp_path / "cli", *small_args, *es_args)) == 0
    assert "early stopping (window 3, patience 2)" in capsys.readouterr().out
    # off: no ES columns or method
    off = DipStudyConfig(dip=DipConfig(iterations=4, record_every=2, **small), per_category=1, batch_size=4, device="cpu", transforms=False)
    plain = run_dip_study(toy_dataset, toy_model, attack_dirs[:1], tmp_path / "off", off)
    assert plain["early_stop"] is None and "dip-es" not in {r["method"] for r in plain["table3"]}
    assert "es_iteration" not in read_csv(tmp_path / "off" / "predictions.csv")[0]


def test_purify_flags_take_their_defaults_from_the_dataclasses(capsys: pytest.CaptureFixture[str]) -> None:
    """``dfrobust purify`` repeats no DIP default: its help reads DipConfig/DipStudyConfig, and an absent flag leaves
    the dataclass's default in place."""
    import argparse

    from dfrobust.cli import main
    from dfrobust.commands.purify import _given
    from dfrobust.defenses.dip import DipConfig
    from dfrobust.studies.dip_study import DipStudyConfig

    with pytest.raises(SystemExit):
        main(["purify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, value in (("--batch-size", DipStudyConfig().batch_size), ("--iterations", DipConfig().iterations)):
        assert f"{flag} {flag[2:].upper().replace('-', '_')}" in text and f"(default: {value})" in text
    args = argparse.Namespace(iterations=None, batch_size=4, early_stop=None)
    assert _given(args, "iterations", "batch_size", "early_stop") == {"batch_size": 4}
