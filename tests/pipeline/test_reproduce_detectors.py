"""``reproduce --detector``: the user's own detectors (cards) red-teamed end to end, without training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import train_tiny
from dfrobust.cli import main
from dfrobust.models.checkpoint import save_detector
from dfrobust.utils.io import read_csv, read_json


def test_two_cards_get_the_whole_study_and_report(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = save_detector(
        train_tiny(toy_dataset, steps=60, seed=1),
        tmp_path / "other.safetensors",
        {"input_size": [32, 32], "seed": 1, "training": {"note": "tests"}},
    )
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
    # a report about the user's detectors: the verdict first, none of the paper's training boilerplate
    md = (run / "report" / "report.md").read_text()
    assert md.split("\n## ")[1].startswith("Verdict\n")
    assert [r["detector"] for r in results["sections"]["verdict"]] == ["mine", "theirs"]
    for boilerplate in ("Lipschitz", "Regularised models not attacked yet", "VGG-16", "lambda", "`train.", "validation split carved"):
        assert boilerplate not in md, boilerplate
    assert not any(d.startswith("`train.") for d in results["differences"])
    assert all(r["cost_multiplier"] is None for r in results["leaderboard"])  # nothing was trained: no training cost
    # a broken card is a one-line error before any work
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "dfrobust:missing.safetensors"\nname = "bad"\noutput = "sideways"\n')
    capsys.readouterr()
    assert main([*args[:-2], "--run", str(tmp_path / "run2"), "--detector", str(bad)]) == 2
    assert "bad.toml" in capsys.readouterr().err and not (tmp_path / "run2" / "plan.json").exists()


def _generator_folder(toy_dataset: Path, root: Path) -> Path:
    """A CNNDetection-style folder: test/gen1 (5 fake + 5 real, 32 px) and test/gen2 (3 + 3, 16 px), from the toy test images."""
    from torch.nn import functional as F

    from dfrobust.data.dataset import load_split
    from dfrobust.utils.io import save_png

    test = load_split(toy_dataset, "test")
    taken = {0: 0, 1: 0}
    for i in range(len(test)):
        label = int(test.y[i])
        k = taken[label]
        taken[label] += 1
        if k >= 8:
            continue
        gen, x = ("gen1", test.images([i])[0]) if k < 5 else ("gen2", F.interpolate(test.images([i]), size=(16, 16), mode="area")[0])
        save_png(root / "test" / gen / ("1_fake" if label == 0 else "0_real") / f"{k}.png", x)
    return root


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_cards_on_a_generator_folder_read_in_place(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    folder = _generator_folder(toy_dataset, tmp_path / "cnndetection")
    before = _listing(folder)
    cards = []
    for name in ("a", "b"):  # the same network twice: enough to exercise whitebox, blackbox and per-generator rows
        card = tmp_path / f"{name}.toml"
        card.write_text(f'source = "dfrobust:{toy_model}"\nname = "{name}"\n')
        cards += ["--detector", str(card)]
    run = tmp_path / "run"
    assert main(["reproduce", "--preset", "tiny", "--data", str(folder), "--run", str(run), "--device", "cpu", *cards]) == 0
    assert _listing(folder) == before  # nothing written into the user's folder
    assert not (run / "data").exists()  # nothing imported either
    plan = read_json(run / "plan.json")
    assert plan["data"]["in_place"] and plan["data"]["groups"] == ["gen1", "gen2"]
    assert read_json(run / "data.json")["source"] == "in-place"
    assert read_json(run / "dip" / "summary.json")["complete"]
    results = read_json(run / "report" / "results.json")
    rows = {r["model"]: r for r in results["table1"]}
    assert list(rows) == ["a", "a / gen1", "a / gen2", "b", "b / gen1", "b / gen2"]
    assert (rows["a"]["n"], rows["a / gen1"]["n"], rows["a / gen2"]["n"]) == (16, 10, 6)
    assert rows["b / gen2"]["group"] == "gen2" and rows["b / gen2"]["paper"] is None
    page = (run / "report" / "report.md").read_text()
    assert "a / gen1" in page and "read in place" in page
    # Table II by generator: each attack's images split over the generators, none lost or counted twice
    by_gen = results["table2_groups"]
    assert {r["group"] for r in by_gen} == {"gen1", "gen2"} and "Table II by generator" in page
    for whole in results["table2"]:
        parts = [r for r in by_gen if all(r[k] == whole[k] for k in ("model", "attack", "setting", "source"))]
        assert sum(r["n"] for r in parts) == whole["n"] and len(parts) in (1, 2)


def test_a_list_is_read_in_place_only_for_cards(tmp_path: Path) -> None:
    from dfrobust.config import study_config
    from dfrobust.errors import DfrobustError
    from dfrobust.pipeline import plan_study
    from dfrobust.utils.io import save_png

    for i, label in enumerate(("fake", "real", "fake", "real")):
        save_png(tmp_path / "imgs" / f"{i}.png", torch.full((3, 8, 8), i / 4))
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "".join(f"imgs/{i}.png,{lab}\n" for i, lab in enumerate(("fake", "real", "fake", "real"))))
    cfg = study_config("tiny", [])
    with pytest.raises(DfrobustError, match="with --detector only"):
        plan_study(cfg, tmp_path / "run", listing, device="cpu")
    card = tmp_path / "a.toml"
    card.write_text('source = "dfrobust:missing.safetensors"\nname = "a"\n')  # only read, never built, while planning
    cfg["run"]["detectors"] = [str(card)]
    plan = plan_study(cfg, tmp_path / "run", listing, device="cpu")
    assert plan.data_dir == listing.resolve() and plan.stages[0].config["source"] == "in-place"
