"""The whole study end to end on the ``tiny`` preset: every stage, every artifact, the report,
caching and resumption; plus preset and override handling."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import dfrobust.studies.attack_run as experiment
import dfrobust.studies.dip_study as study
from dfrobust.cli import main
from dfrobust.config import load_preset, study_config
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.pipeline import attack_plan, plan_study, reproduce
from dfrobust.roles import study_roles
from dfrobust.stages import StageRunner
from dfrobust.utils.io import read_csv, read_json

VGG_NAME = "vgg16"
RESULT_COLUMNS = [
    "image",
    "label",
    "attack",
    "source",
    "target",
    "setting",
    "clean_p_real",
    "adv_p_real",
    "clean_pred",
    "adv_pred",
    "l2",
    "linf",
    "psnr",
    "ssim",
    "success",
    "seconds",
]


def test_presets_extend_paper_and_overrides_are_checked() -> None:
    paper = load_preset("paper")
    quick = load_preset("quick")
    assert paper["attack"]["cw"]["max_steps"] == 1000 and paper["dip"]["classify_at"] == 6000
    assert set(quick) >= {"run", "data", "train", "attack", "dip"}
    cfg = study_config("tiny", ["attack.cw.max_steps=7", "train.lr=0.5", "train.vgg16.lr=0.1"])
    assert cfg["attack"]["cw"]["max_steps"] == 7 and cfg["train"]["lr"] == 0.5 and cfg["train"]["vgg16"]["lr"] == 0.1
    with pytest.raises(DfrobustError, match="unknown key"):
        study_config("tiny", ["attack.cw.max_stpes=7"])
    with pytest.raises(DfrobustError, match="expects int"):
        study_config("tiny", ["attack.cw.max_steps=many"])
    with pytest.raises(DfrobustError, match="unknown preset"):
        study_config("nope")


def test_differences_name_the_quick_presets_optimizer_and_vgg() -> None:
    from dfrobust.report.collected import CollectedRun
    from dfrobust.report.render import differences

    quick = differences(CollectedRun(cfg=study_config("quick"), manifest={"image_size": [32, 32]}))
    assert any("Adam instead of the paper's SGD" in d for d in quick)
    assert any("vgg16_bn_gap" in d and "global pooling" in d for d in quick)
    assert any("`attack.cw.kappa` = 10.0 (the paper: 200.0)" in d for d in quick)
    assert any("`dip.classify_at` = 600 (the paper: 6000)" in d for d in quick)
    assert not any("`train.momentum`" in d for d in quick)  # unused by Adam
    paper = differences(CollectedRun(cfg=study_config("paper"), manifest={"image_size": [256, 256]}))
    assert not any("train with Adam" in d or "`" in d for d in paper)  # the paper preset differs from itself nowhere
    custom = differences(CollectedRun(cfg=study_config("paper", ["train.momentum=0.5"]), manifest={}))
    assert any("`train.momentum` = 0.5 (the paper: 0.9)" in d for d in custom)


@pytest.mark.parametrize("start", ["resnet18", "scratch"])
def test_regularised_resnets_start_where_the_config_says(tmp_path: Path, start: str) -> None:
    cfg = study_config("tiny", [f"train.lipschitz.start={start}", "train.lipschitz.epochs=3"])
    stages = {s.name: s for s in plan_study(cfg, tmp_path / "run", device="cpu").stages}
    lip = stages["train/resnet18-lip5"]
    assert lip.config["epochs"] == 3 and lip.config["lipschitz"] == 5.0
    if start == "resnet18":
        assert "train/resnet18" in lip.deps and lip.config["resume_from"] == "resnet18"
    else:
        assert "train/resnet18" not in lip.deps and lip.config["resume_from"] is None
    with pytest.raises(DfrobustError, match="train.lipschitz.start"):
        plan_study(study_config("tiny", ["train.lipschitz.start=imagenet"]), tmp_path / "run", device="cpu")


def test_dip_early_stopping_is_a_preset_key_that_leaves_the_stage_key_alone_while_off(tmp_path: Path) -> None:
    from dfrobust.report.collected import CollectedRun
    from dfrobust.report.render import differences

    cfg = study_config("tiny")
    dip = {s.name: s for s in plan_study(cfg, tmp_path / "run", device="cpu").stages}["dip"]
    assert "early_stop" not in dip.config["dip"]  # off: the key of runs made before early stopping
    old = copy.deepcopy(cfg)
    for k in ("early_stop", "es_window", "es_patience"):
        del old["dip"][k]  # a run recorded before the keys existed plans the same stage
    assert {s.name: s for s in plan_study(old, tmp_path / "run", device="cpu").stages}["dip"].config == dip.config
    on = study_config("tiny", ["dip.early_stop=true", "dip.es_patience=50"])
    dip_on = {s.name: s for s in plan_study(on, tmp_path / "run", device="cpu").stages}["dip"]
    assert dip_on.config["dip"]["early_stop"] is True and dip_on.config["dip"]["es_patience"] == 50
    assert dip_on.config["dip"]["es_window"] == 100
    assert any("`dip.early_stop` = True (the paper: False)" in d for d in differences(CollectedRun(cfg=on, manifest={})))


def test_dip_levels_reach_the_study_and_the_adaptive_purifier_and_five_add_no_key(tmp_path: Path) -> None:
    def stages(*overrides: str) -> dict[str, Any]:
        cfg = study_config("tiny", ['adaptive.purifiers=["dip"]', *overrides])
        return {s.name: s for s in plan_study(cfg, tmp_path / "run", device="cpu").stages}

    paper, four = stages(), stages("dip.levels=4")
    assert list(paper["dip"].config["dip"]["channels_down"]) == [8, 16, 32, 64, 128]
    assert list(four["dip"].config["dip"]["channels_down"]) == [8, 16, 32, 64]
    assert list(four["dip"].config["dip"]["channels_skip"]) == [0, 0, 0, 4]
    assert "channels_down" not in paper["adaptive/dip"].config["purifier_params"]  # earlier runs keep their key
    assert list(four["adaptive/dip"].config["purifier_params"]["channels_up"]) == [8, 16, 32, 64]
    cheap = four["adaptive/dip"].config["attack_purifier_params"]
    assert not cheap or list(cheap["channels_down"]) == [8, 16, 32, 64]  # the attack's cheaper DIP: the same network


def test_swap_knobs_reach_the_data_stage(tmp_path: Path) -> None:
    cfg = study_config("tiny", ["data.swap.artifacts=0.05"])
    data = plan_study(cfg, tmp_path / "run", device="cpu").stages[0]
    assert data.name == "data" and data.config["swap"] == {"artifacts": 0.05}
    with pytest.raises(DfrobustError, match="unknown data.swap knob"):
        plan_study(study_config("tiny", ["data.swap.sharpness=1"]), tmp_path / "run", device="cpu")


def _tokens(run: Path) -> dict[str, str]:
    return {r["name"]: r["token"] for r in map(read_json, (run / ".stages").glob("*.json"))}


def test_every_stage_and_artifact(built_run: Path) -> None:
    tiny_run = built_run
    cfg = study_config("tiny")
    for name in (r.name for r in study_roles(cfg)):
        side = read_json(tiny_run / "models" / f"{name}.json")
        assert side["metrics"]["test"]["n"] > 0 and (tiny_run / "models" / f"{name}.safetensors").is_file()
    for run in attack_plan(cfg):
        folder = tiny_run / "attacks" / f"{run.attack}-{run.source}"
        rows = read_csv(folder / "results.csv")
        assert list(rows[0])[: len(RESULT_COLUMNS)] == RESULT_COLUMNS
        attacked = [r for r in rows if not r.get("skipped")]  # a chained attack skips the fakes earlier ones fooled
        assert {r["target"] for r in attacked} == set(run.targets) or not attacked
        assert all((folder / "images" / r["image"]).with_suffix(".png").is_file() for r in attacked)
        skipped = {r["image"] for r in rows if r.get("skipped")}
        # APGD-margin skips exactly the fakes APGD fooled on the same source, Square those APGD or APGD-margin fooled
        chain = [a for a in cfg["attack"].get(run.attack, {}).get("survivors_of", []) if a in cfg["attack"]["attacks"]]
        fooled: set[str] = set()
        for earlier in chain:
            earlier_rows = read_csv(tiny_run / "attacks" / f"{earlier}-{run.source}" / "results.csv")
            fooled |= {r["image"] for r in earlier_rows if r["setting"] == "whitebox" and r["success"] == "1" and not r.get("skipped")}
        assert skipped == fooled
    for name in ("trajectories.csv", "table3.csv", "table4.csv", "sweep.csv", "figures.json", "summary.json"):
        assert (tiny_run / "dip" / name).is_file(), name
    runner = StageRunner(tiny_run, log=lambda s: None)
    assert all(r["state"] == "done" for r in map(read_json, (tiny_run / ".stages").glob("*.json")))
    assert runner.record("dip")["seconds"] > 0


def test_platform_stage_and_its_section(built_run: Path) -> None:
    """The tiny preset's [platform] FGSM: plain and robust success on the same fakes, in the report and results.json."""
    summary = read_json(built_run / "platform" / "fgsm-resnet18" / "summary.json")
    assert summary["robust_to"] == "jpeg:50-95" and summary["eot"] == 2
    n = summary["n"]
    for variant in ("plain", "robust"):
        assert {k: v["n"] for k, v in summary["success"][variant].items()} == {"lossless": n, "chain": n, "heldout": n}
    results = read_json(built_run / "report" / "results.json")
    assert results["sections"]["platform"]["fgsm-resnet18"]["n"] == n
    assert "attacks that survive the platform" in (built_run / "report" / "report.md").read_text()
    assert results["threat_model"]["eps"] == 0.02 and all("threat_model" in r for r in results["leaderboard"])


def test_report_is_self_contained_and_from_the_run(built_run: Path) -> None:
    tiny_run = built_run
    report = tiny_run / "report"
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page and not re.search(r'src="(?!data:)', page)
    for title in (
        "Table I.",
        "Table II.",
        "Table III.",
        "Table IV.",
        "Fig 2.",
        "Fig 3.",
        "Fig 4.",
        "Fig 5.",
        "Fig 6.",
        "Defense leaderboard",
        "Trade-off",
        "Randomized-smoothing certificates",
        "Table V.",
        "Robustness curve (linf)",
        "Robustness curve (l2)",
        "Square attack",
    ):
        assert title in page, title
    results = read_json(report / "results.json")
    board = {r["defense"]: r for r in results["leaderboard"]}
    assert {"resnet18", "resnet18-at", "resnet18-smooth", "resnet18-blur", "dip + resnet18-blur"} <= set(board)
    assert "vgg16" not in board  # the other architecture is not a defense of the ResNet
    assert all(isinstance(r["masking_warnings"], list) for r in results["leaderboard"] if r["kind"] == "trained")
    assert results["settings"]["pinned_isa"] in ("none", "avx2", "avx512")  # the preset's run.pin_isa, else what the stages ran at
    ranked = [r for r in results["leaderboard"] if r["robust_accuracy"] is not None]
    chance = [bool(r.get("near_chance") or r.get("collapsed")) for r in ranked]
    assert chance == sorted(chance)  # a detector near chance or collapsed ranks after every other
    for flag in (False, True):
        robust = [r["robust_accuracy"] for r in ranked if bool(r.get("near_chance") or r.get("collapsed")) == flag]
        assert robust == sorted(robust, reverse=True)
    # the transfer attacks beyond the paper stand beside its plain FGSM, and the strongest is quoted
    assert "Transfer attacks: the paper" in page
    for row in results["transfer"]:
        attacks = {t["attack"] for t in row["transfers"]}
        assert {"fgsm", "mifgsm", "dimifgsm"} <= attacks
        assert row["strongest"]["accuracy"] <= results["table2_wide"][row["model"]]["fgsm_blackbox"]
    at = board["resnet18-at"]
    bounded = [at["whitebox"][f"{a}_whitebox"] for a in at["robust_attacks"] if f"{a}_whitebox" in at["whitebox"]]
    assert at["robust_accuracy"] <= min(bounded) and at["cost_multiplier"] > 0
    # FMN (minimal-norm) beside CW per detector, on the same attacked fakes; both unbounded, so neither enters robust accuracy
    minimal = [(m["detector"], m["attack"]) for m in results["minimal_perturbation"]]
    assert (
        {d for d, a in minimal if a == "fmn-l2"} == {d for d, a in minimal if a == "cw"} == set(board) - {"dip + resnet18-blur"} | {"vgg16"}
    )
    assert all(minimal[i + 1] == (d, "fmn-l2") for i, (d, a) in enumerate(minimal) if a == "cw")  # each CW row, then its FMN row
    assert not any({"cw", "fmn-l2"} & set(r.get("robust_attacks") or []) for r in results["leaderboard"])
    for src in ("vgg16", "resnet18"):
        cw, fmn = (read_csv(tiny_run / "attacks" / f"{a}-{src}" / "results.csv") for a in ("cw", "fmn"))
        assert {r["image"] for r in fmn if r["setting"] == "whitebox"} == {r["image"] for r in cw if r["setting"] == "whitebox"}
    assert {r["model"] for r in results["robustness_curves"]} == {r.name for r in study_roles(study_config("tiny"))}
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] and r["n"] > 0 for r in results["robustness_curves"])
    assert "apgd-ce-linf_whitebox" in results["table2_wide"]["vgg16"] and "square-linf_whitebox" in results["table2_wide"]["vgg16"]
    cert = read_json(tiny_run / "certify" / "resnet18-smooth" / "summary.json")
    assert board["resnet18-smooth"]["certified_n"] == cert["n_images"] == 6
    vgg = next(r for r in results["table1"] if r["model"] == "vgg16")
    assert vgg["accuracy"] == read_json(tiny_run / "models" / "vgg16.json")["metrics"]["test"]["accuracy"]
    assert vgg["paper"]["accuracy"] == 0.997  # the paper's 99.7%, a fraction as every rate of results.json
    assert any("32x32" in d for d in results["differences"])
    md = (report / "report.md").read_text()
    assert "(figs/fig3.png)" in md and (report / "figs" / "fig3.png").is_file()
    # the summary's DIP line quotes the run's own Table III, real-image recall included
    dip = next(r for r in read_csv(tiny_run / "dip" / "table3.csv") if r["method"] == "dip" and float(r["threshold"]) == 0.25)
    summary = (report / "summary.md").read_text()
    assert f"real images kept as real: {100 * float(dip['real_recall']):.1f}% (paper 90.0%)" in summary


def test_the_report_and_summary_open_with_the_verdict_from_the_leaderboards_numbers(built_run: Path) -> None:
    report = built_run / "report"
    md, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert md.split("\n## ")[1].startswith("Verdict\n")  # the first section, before About and Table I
    assert page[page.index("<h2") :].startswith('<h2 id="verdict">')
    results = read_json(report / "results.json")
    verdict = {r["detector"]: r for r in results["sections"]["verdict"]}
    assert list(verdict) == ["vgg16", "resnet18"]  # the detectors attacked as themselves; the defended ResNets are their defenses
    board = {r["defense"]: r for r in results["leaderboard"]}
    mine, row = verdict["resnet18"], board["resnet18"]
    assert (mine["clean_accuracy"], mine["n_clean"]) == (row["clean_accuracy"], row["n_test"])
    assert (mine["robust"]["accuracy"], mine["robust"]["n"], mine["robust"]["interval"]) == (
        row["robust_accuracy"],
        row["n_robust"],
        row["robust_interval"],
    )
    vgg = results["robust_accuracy"]["vgg16"]  # not on the leaderboard (no defense of the ResNet): its stored record
    assert (verdict["vgg16"]["robust"]["accuracy"], verdict["vgg16"]["robust"]["n"]) == (vgg["accuracy"], vgg["n"])
    best = mine["best_defense"]
    assert best and best["defense"] in board and best["robust_accuracy"] == board[best["defense"]]["robust_accuracy"]
    assert {m["detector"] for m in results["minimal_perturbation"] if m["detector"] == "resnet18"} and mine["minimal"]
    table5 = {r["defense"]: r for r in results["adaptive"]}
    dip = next(p for p in mine["purifiers"] if p["purifier"] == "dip")
    assert (dip["adaptive_worst"], dip["bpda"], dip["n"]) == (
        table5["dip"]["accuracy_adaptive_worst"],
        table5["dip"]["bpda"],
        table5["dip"]["n"],
    )
    section = page[page.index('<h2 id="verdict">') : page.index("<h2", page.index('<h2 id="verdict">') + 1)]
    assert f"{100 * row['robust_accuracy']:.1f}% [{100 * row['robust_interval'][0]:.1f}–" in section
    assert f"BPDA {table5['dip']['bpda']}" in section
    summary = (report / "summary.md").read_text()
    assert summary.startswith("Verdict at Linf 0.02") and "- ResNet-18: clean accuracy" in summary


def test_the_report_labels_attacks_by_their_access_and_results_json_is_versioned(built_run: Path) -> None:
    report = built_run / "report"
    page, summary = (report / "report.html").read_text(), (report / "summary.md").read_text()
    # Square queries the detector's scores only: a score-based black-box attack, never "whitebox"
    assert "SQUARE-LINF score-based black-box" in page and "SQUARE-LINF whitebox" not in page + summary
    assert "FGSM whitebox" in page  # a gradient attack on the detector itself stays whitebox
    results = read_json(report / "results.json")
    assert results["schema_version"] == 3
    # schema 3: every rate of a table with its own n and Wilson interval beside it
    for row in results["table2"]:
        k = round(row["perturbed_accuracy"] * row["n"])
        assert row["perturbed_accuracy_n"] == row["n"] and row["perturbed_accuracy_ci"] == list(wilson_interval(k, row["n"]))
    for model, cells in results["table2_wide_n"].items():
        for key, n in cells.items():
            value, ci = results["table2_wide"][model][key], results["table2_wide_ci"][model][key]
            assert ci == (None if value is None or n is None else list(wilson_interval(round(value * n), n)))
    assert all(r["accuracy_n"] == r["n"] and r["accuracy_ci"] for r in results["table1"] if not r["model"].endswith("(average)"))
    assert all(r["clean_accuracy_ci"] and r["robust_accuracy_ci"] for r in results["leaderboard"] if r["robust_accuracy"] is not None)
    assert results["paper"]["table1"]["vgg16"][0] == 0.997 and "fractions" in results["paper"]["units"]
    assert all(0 <= v <= 1 for row in results["paper"]["table2"].values() for v in row)
    size = next(r for r in re.findall(r"<tr><td>data size</td><td>([^<]*)</td>", page))
    assert "{" not in size and "px; train" in size and " fake, " in size
    assert all((r.get("host") or {}).get("device") != "auto" for r in map(read_json, (built_run / ".stages").glob("*.json")))


def test_rerun_skips_and_a_changed_setting_reruns_only_its_dependents(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tokens(tiny_run)
    reproduce(study_config("tiny"), tiny_run, device="cpu")
    assert _tokens(tiny_run) == before
    reproduce(study_config("tiny", ["attack.fgsm.eps=0.05"]), tiny_run, device="cpu")
    after = _tokens(tiny_run)
    changed = {name for name in before if after[name] != before[name]}
    # the platform stage crafts FGSM at the preset's [attack.fgsm] too
    assert changed == {name for name in before if name.startswith(("attack/fgsm", "adaptive/", "platform/fgsm"))} | {"samples", "dip"}
    capsys.readouterr()
    assert main(["status", "--run", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "68/68 stages done" in out and "attack/cw-vgg16" in out and "certify/resnet18-smooth" in out and "adaptive/dip" in out


def test_a_retrained_target_is_rescored_not_recrafted(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = study_config("tiny")
    crafted: list[str] = []
    purified: list[int] = []
    craft, purify = experiment.attack_batch, study.purify_batch
    monkeypatch.setattr(experiment, "attack_batch", lambda c, k, i, src, *a: crafted.append(src.name) or craft(c, k, i, src, *a))
    monkeypatch.setattr(study, "purify_batch", lambda *a, **kw: purified.append(1) or purify(*a, **kw))
    before = _tokens(tiny_run)
    reproduce(cfg, tiny_run, device="cpu", force={"train/resnet18-lip5"})
    after = _tokens(tiny_run)
    changed = {name for name in before if after[name] != before[name]}
    # every attack that evaluates the retrained model ran again, and so did the DIP stage ...
    assert {"train/resnet18-lip5", "attack/fgsm-vgg16", "attack/cw-vgg16", "attack/cw-resnet18-lip5", "dip"} <= changed
    assert "attack/cw-resnet18" not in changed
    # ... but the VGG-16's adversarial images were re-scored, not crafted again, and DIP reused its batches
    assert VGG_NAME not in crafted and purified == []
    rows = read_csv(tiny_run / "attacks" / "cw-vgg16" / "results.csv")
    assert "resnet18-lip5" in {r["target"] for r in rows}


def test_reproduce_rejects_a_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "r"), "--data", str(tmp_path / "nope")])
    assert code == 2 and "not a folder" in capsys.readouterr().err


def test_report_and_status_work_after_the_source_data_folder_moved(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    from dfrobust.utils.io import write_json

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    stored = read_json(run / "config.json")
    stored["data_arg"] = str(tmp_path / "moved-away")  # the folder the run was imported from is gone
    write_json(run / "config.json", stored)
    shutil.rmtree(run / "report")
    capsys.readouterr()
    assert main(["status", "--run", str(run)]) == 0
    assert "stages done" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    page = (run / "report" / "report.html").read_text()
    assert "Table II." in page and "Fig 2." in page and "moved-away" in page


def test_the_report_orders_models_by_their_roles_and_counts_only_planned_stages(tiny_run: Path, tmp_path: Path) -> None:

    from dfrobust.report.render import write_report
    from dfrobust.utils.io import write_json

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    # a stage record left from an earlier plan must not count in the run time
    write_json(run / ".stages" / "attack__old-vgg16.json", {"name": "attack/old-vgg16", "state": "done", "seconds": 1e6})
    plan = read_json(run / "plan.json")
    plan["roles"] = list(reversed(plan["roles"]))  # the plan's order is the report's order
    write_json(run / "plan.json", plan)
    write_report(run)
    results = read_json(run / "report" / "results.json")
    assert [r["model"] for r in results["table1"]][0] == plan["roles"][0]["name"] == "resnet18-smooth"
    assert sum(s["seconds"] for s in results["stages"]) < 1e5
    assert "old-vgg16" not in (run / "report" / "report.md").read_text()


SMALL = ["train.lipschitz.lambdas=[5.0]", "train.hardened.roles=[]", 'attack.attacks=["fgsm"]']


def test_several_devices_start_every_stage_once_its_inputs_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import threading

    started: list[str] = []
    lock = threading.Lock()
    real_run = subprocess.run

    def in_process(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if "--stage" not in cmd:
            return real_run(cmd, **kwargs)
        # the stage's own command line, run here instead of in a new process (quick; the slow test below spawns)
        with lock:
            started.append(cmd[cmd.index("--stage") + 1])
        return subprocess.CompletedProcess(cmd, main(cmd[3:]))

    monkeypatch.setattr(subprocess, "run", in_process)
    run = tmp_path / "two-devices"
    reproduce(study_config("tiny", SMALL), run, device="cpu", devices=["cpu", "cpu"])
    plan = read_json(run / "plan.json")
    assert sorted(started) == sorted(s["name"] for s in plan["stages"][1:])
    records = {r["name"]: r for r in map(read_json, (run / ".stages").glob("*.json"))}
    assert all(r["state"] == "done" for r in records.values()) and len(records) == len(plan["stages"])
    for st in plan["stages"]:  # no stage started before its inputs were finished
        assert all(records[d]["finished"] <= records[st["name"]]["started"] for d in st["deps"])
    spans = sorted((r["started"], r["finished"]) for r in records.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # some stage started before the previous one ended


@pytest.mark.slow
def test_several_devices_give_the_numbers_of_one(tmp_path: Path) -> None:
    cfg = study_config("tiny", SMALL)
    reproduce(cfg, tmp_path / "one", device="cpu")
    run = tmp_path / "two-devices"
    reproduce(cfg, run, device="cpu", devices=["cpu", "cpu"])

    def rows(folder: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(folder / "results.csv")]

    for name in ("fgsm-vgg16", "fgsm-resnet18-blur"):  # each stage in its own process: no shared random state
        assert rows(run / "attacks" / name) == rows(tmp_path / "one" / "attacks" / name)


def test_transfer_attacks_are_crafted_only_where_something_transfers() -> None:
    runs = attack_plan(study_config("tiny"))
    sources = {a: {r.source for r in runs if r.attack == a} for a in ("fgsm", "mifgsm", "dimifgsm")}
    assert sources["mifgsm"] == sources["dimifgsm"] == {"vgg16", "resnet18"}  # the roles the others transfer from
    assert len(sources["fgsm"]) == len(study_roles(study_config("tiny")))  # the paper's attacks: every role
    every = attack_plan(study_config("tiny", ["attack.transfer_only=[]"]))
    assert {r.source for r in every if r.attack == "mifgsm"} == sources["fgsm"]
