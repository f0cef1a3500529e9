"""`dfrobust reproduce --seeds`: one run per seed, the combined results.json (seeds, per_seed, spread), resuming, checks."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.utils.io import read_json, write_json

#: The tiny preset, smaller still: one Lipschitz model, no hardened roles, FGSM only (two seeds in well under a minute).
SMALL = ["train.lipschitz.lambdas=[5.0]", "train.hardened.roles=[]", 'attack.attacks=["fgsm"]']


def _tokens(run: Path) -> dict[str, str]:
    return {r["name"]: r["token"] for r in map(read_json, (run / ".stages").glob("*.json"))}


def _num(value: Any) -> float | None:
    """A stored number as the test reads it (CSV text or JSON; blank and NaN are missing)."""
    if value in (None, ""):
        return None
    v = float(value)
    return None if math.isnan(v) else v


def _expected(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one seed's run, read here from its own results.json."""
    det = {r["defense"]: (_num(r["clean_accuracy"]), _num(r["robust_accuracy"])) for r in results["leaderboard"]}
    for r in results["table1"]:
        if r["model"] not in det and not r["model"].endswith(")"):
            det[r["model"]] = (_num(r["accuracy"]), _num((results["robust_accuracy"].get(r["model"]) or {}).get("accuracy")))
    t3 = {(r["method"], float(r["threshold"])): r for r in results["table3"]}
    wrong = next(r for r in results["table4"] if r["category"] == "perturbed/fake-wrong")
    dip = {
        "accuracy": _num(t3[("dip", 0.25)]["accuracy"]),
        "undefended_accuracy": _num(t3[("baseline", 0.5)]["accuracy"]),
        "real_recall": _num(t3[("dip", 0.25)]["real_recall"]),
        "fooled_fakes_caught": _num(wrong["dip@0.25"]),
    }
    return {"detectors": det, "dip": dip}


def test_two_seeds_end_to_end_and_their_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "seeds"
    sets = [a for s in SMALL for a in ("--set", s)]
    assert main(["reproduce", "--preset", "tiny", "--seeds", "0", "1", "--run", str(run), "--device", "cpu", *sets]) == 0
    combined = read_json(run / "report" / "results.json")
    assert combined["seeds"] == [0, 1] and [e["seed"] for e in combined["per_seed"]] == [0, 1]
    own = {}
    for seed, entry in zip((0, 1), combined["per_seed"]):
        folder = run / f"seed-{seed}"
        assert read_json(folder / "config.json")["config"]["run"]["seed"] == seed
        own[seed] = exp = _expected(read_json(folder / "report" / "results.json"))
        assert exp["detectors"] and set(entry["detectors"]) == set(exp["detectors"])
        for name, (clean, robust) in exp["detectors"].items():
            assert (entry["detectors"][name]["clean_accuracy"], entry["detectors"][name]["robust_accuracy"]) == (clean, robust), name
        assert {k: entry["dip"][k] for k in exp["dip"]} == exp["dip"]
    assert read_json(run / "seed-0" / "data" / "manifest.json") != read_json(run / "seed-1" / "data" / "manifest.json")

    # the spread of every headline number, computed here from the two runs' own numbers
    expected_rows = {(name, "clean_accuracy"): [own[s]["detectors"][name][0] for s in (0, 1)] for name in own[0]["detectors"]}
    expected_rows |= {(name, "robust_accuracy"): [own[s]["detectors"][name][1] for s in (0, 1)] for name in own[0]["detectors"]}
    expected_rows |= {("dip", k): [own[s]["dip"][k] for s in (0, 1)] for k in own[0]["dip"]}
    got = {(r["name"], r["number"]): r for r in combined["spread"]}
    assert set(expected_rows) <= set(got)
    for key, values in expected_rows.items():
        row, present = got[key], [v for v in values if v is not None]
        assert row["values"] == values and row["n"] == len(present), key
        if present:
            assert row["mean"] == pytest.approx(sum(present) / len(present)) and (row["min"], row["max"]) == (min(present), max(present))
        if len(present) == 2:
            assert row["sd"] == pytest.approx(abs(present[0] - present[1]) / math.sqrt(2))
    # every Table I, Table II and leaderboard row carries its rates per seed: the seeds' own values
    own_results = {s: read_json(run / f"seed-{s}" / "report" / "results.json") for s in (0, 1)}
    for table, keys, rate in (
        ("table1", ("model",), "accuracy"),
        ("table2", ("model", "attack", "setting", "source"), "perturbed_accuracy"),
        ("leaderboard", ("defense",), "robust_accuracy"),
    ):
        rows = {tuple(r.get(k) for k in keys): r for r in combined[table]}
        assert rows and set(rows) == {tuple(r.get(k) for k in keys) for s in (0, 1) for r in own_results[s][table]}, table
        for s in (0, 1):
            for r in own_results[s][table]:
                assert rows[tuple(r.get(k) for k in keys)]["per_seed"][rate][str(s)] == _num(r[rate]), (table, r)
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "Spread over seeds" in md and "seed 0" in md and "seed 1" in md and "Table II over seeds" in md
    assert "seed 1" in (run / "report" / "summary.md").read_text(encoding="utf-8")

    # rerun without --seeds: the recorded seeds, every finished stage skipped
    before = {s: _tokens(run / f"seed-{s}") for s in (0, 1)}
    assert main(["reproduce", "--run", str(run), "--device", "cpu"]) == 0
    assert {s: _tokens(run / f"seed-{s}") for s in (0, 1)} == before
    capsys.readouterr()
    assert main(["status", "--run", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(s["seed"], s["done"] == s["total"]) for s in status["seeds"]] == [(0, True), (1, True)]


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the pipeline by a recorder (no stage runs)."""
    seen: list[dict[str, Any]] = []

    def fake(cfg: dict, run_dir: Path, data_arg: Any = None, device: str = "auto", force: Any = None, devices: Any = None) -> Path:
        logging.getLogger("dfrobust.pipeline").info("[run]  data")
        seen.append(
            {"seed": cfg["run"]["seed"], "seeds": cfg["run"].get("seeds"), "run_dir": Path(run_dir), "overrides": cfg["run"]["overrides"]}
        )
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(run_dir) / "config.json", {"config": cfg, "data_arg": data_arg, "device": device})
        return Path(run_dir) / "report"

    monkeypatch.setattr("dfrobust.pipeline.reproduce", fake)
    return seen


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0", "0"], "given twice"),
        (["--seeds", "0", "1", "--set", "run.seed=3"], "run.seed"),
    ],
)
def test_seeds_are_checked_before_any_work(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err and not calls and not (tmp_path / "r").exists()


@pytest.mark.parametrize("bad", ["-1", "x", "1.5"])
def test_a_seed_is_a_non_negative_integer(tmp_path: Path, calls: list[dict[str, Any]], bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "r"), "--seeds", "0", bad])
    assert exc.value.code == 2 and not calls


def test_seeds_refuse_a_run_of_one_seed(tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "one"
    run.mkdir()
    write_json(run / "config.json", {"config": study_config("tiny"), "data_arg": None, "device": "cpu"})
    assert main(["reproduce", "--run", str(run), "--seeds", "0", "1"]) == 2
    assert "one seed" in capsys.readouterr().err and not calls


def test_an_interrupted_seeds_run_resumes_with_its_recorded_seeds(
    tmp_path: Path, calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dfrobust.pipeline as pipeline

    run = tmp_path / "r"
    recorder = pipeline.reproduce

    def stops_at_seed_1(cfg: dict, run_dir: Path, **kwargs: Any) -> Path:
        if cfg["run"]["seed"] == 1:
            raise KeyboardInterrupt
        return recorder(cfg, run_dir, **kwargs)

    monkeypatch.setattr(pipeline, "reproduce", stops_at_seed_1)
    assert main(["reproduce", "--preset", "tiny", "--run", str(run), "--seeds", "0", "1"]) == 130
    assert [c["seed"] for c in calls] == [0] and read_json(run / "seeds.json")["seeds"] == [0, 1]
    monkeypatch.setattr(pipeline, "reproduce", recorder)
    assert main(["reproduce", "--run", str(run)]) == 0  # no --preset, no --seeds: the recorded ones
    assert [(c["seed"], c["run_dir"].name) for c in calls[1:]] == [(0, "seed-0"), (1, "seed-1")]
    assert all(c["overrides"][-1] == f"run.seed={c['seed']}" for c in calls)
    assert read_json(run / "seed-1" / "config.json")["config"]["run"]["preset"] == "tiny"  # the new seed took seed 0's config
    per_seed = read_json(run / "report" / "results.json")["per_seed"]
    assert [e["seed"] for e in per_seed] == [0, 1] and all("missing" in e for e in per_seed)  # the recorder writes no reports


def test_a_seeds_run_stopped_before_its_first_seed_needs_its_preset_again(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "r"
    run.mkdir()
    write_json(run / "seeds.json", {"seeds": [0, 1], "runs": {"0": "seed-0", "1": "seed-1"}})
    assert main(["reproduce", "--run", str(run)]) == 2  # never the default preset in its place
    assert "--preset" in capsys.readouterr().err and not calls
    assert main(["reproduce", "--run", str(run), "--preset", "tiny"]) == 0
    assert [c["seed"] for c in calls] == [0, 1]


def test_the_presets_seeds_lists() -> None:
    # the cpu preset runs three seeds; the others one (run.seeds = [] from the paper preset)
    assert {p: study_config(p)["run"]["seeds"] for p in ("paper", "quick", "tiny", "cpu")} == {
        "paper": [], "quick": [], "tiny": [], "cpu": [0, 1, 2]
    }  # fmt: skip


def test_a_preset_with_seeds_runs_one_run_per_seed_in_the_seeds_layout(
    tmp_path: Path, calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--preset", "cpu"]) == 0  # no --run: the preset's own folder, runs/cpu
    run = tmp_path / "runs" / "cpu"
    assert [(c["seed"], c["run_dir"].resolve()) for c in calls] == [(s, run / f"seed-{s}") for s in (0, 1, 2)]
    assert read_json(run / "seeds.json")["seeds"] == [0, 1, 2] and all(c["seeds"] == [0, 1, 2] for c in calls)
    assert [e["seed"] for e in read_json(run / "report" / "results.json")["per_seed"]] == [0, 1, 2]


def test_seeds_on_the_command_line_override_the_presets(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    assert main(["reproduce", "--preset", "cpu", "--seeds", "5", "--run", str(tmp_path / "a")]) == 0
    assert [(c["seed"], c["seeds"], c["run_dir"].name) for c in calls] == [(5, [5], "seed-5")]
    calls.clear()
    assert main(["reproduce", "--preset", "tiny", "--set", "run.seeds=[3, 1]", "--run", str(tmp_path / "b")]) == 0
    assert [(c["seed"], c["run_dir"].name) for c in calls] == [(3, "seed-3"), (1, "seed-1")]
    calls.clear()
    # an empty list: one ordinary run in the folder itself, at run.seed
    assert main(["reproduce", "--preset", "cpu", "--set", "run.seeds=[]", "--set", "run.seed=4", "--run", str(tmp_path / "c")]) == 0
    assert [(c["seed"], c["run_dir"]) for c in calls] == [(4, tmp_path / "c")] and not (tmp_path / "c" / "seeds.json").exists()


@pytest.mark.parametrize(
    "sets, message",
    [
        (["run.seed=3"], "drop --set run.seed"),
        (["run.seeds=[0, 0]"], "config run.seeds = [0, 0] needs a list of distinct non-negative integers"),
        (["run.seeds=[-1, 2]"], "config run.seeds = [-1, 2]"),
        (["run.seeds=[1.5, 2]"], "config run.seeds = [1.5, 2]"),
        (["run.seeds=[7]"], "names one seed other than run.seed = 0"),
    ],
)
def test_a_presets_seeds_are_checked_before_any_work(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], sets: list[str], message: str
) -> None:
    args = [a for s in sets for a in ("--set", s)]
    assert main(["reproduce", "--preset", "cpu", "--run", str(tmp_path / "r"), *args]) == 2
    assert message in capsys.readouterr().err and not calls and not (tmp_path / "r").exists()


def test_a_run_of_one_seed_stays_one(tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "one"
    run.mkdir()
    write_json(run / "config.json", {"config": study_config("cpu", ["run.seeds=[]"]), "data_arg": None, "device": "cpu"})
    assert main(["reproduce", "--run", str(run), "--preset", "cpu"]) == 2  # the preset's three seeds: not in this folder
    assert "run of one seed" in capsys.readouterr().err and not calls
    assert main(["reproduce", "--run", str(run)]) == 0  # continued as the one run it is
    assert [(c["seed"], c["run_dir"]) for c in calls] == [(0, run)]
    # a seed of a --seeds run records its run's seeds and still continues as one run
    seed_run = tmp_path / "s" / "seed-1"
    seed_run.mkdir(parents=True)
    cfg = study_config("cpu")
    cfg["run"]["seed"] = 1
    write_json(seed_run / "config.json", {"config": cfg, "data_arg": None, "device": "cpu"})
    assert main(["reproduce", "--run", str(seed_run)]) == 0
    assert [(c["seed"], c["run_dir"]) for c in calls[1:]] == [(1, seed_run)]


def _seed_results(acc: float, robust: float | None, extra_row: bool) -> dict[str, Any]:
    """A seed's results.json, as much of it as the rows over seeds read."""
    table2 = [{"model": "m", "attack": "fgsm", "setting": "whitebox", "source": "m", "images": "fake", "n": 10, "n_correct": 8,
               "clean_accuracy": 0.8, "perturbed_accuracy": acc / 2, "success_rate_on_correct": 0.5}]  # fmt: skip
    if extra_row:
        table2.append({**table2[0], "attack": "cw", "perturbed_accuracy": 0.0})
    return {
        "table1": [{"model": "m", "n": 20, "accuracy": acc, "auroc": 0.9, "real_recall": 1.0, "real_recall_n": 10, "input_grad_norm": 0.3}],
        "table2": table2,
        "leaderboard": [
            {
                "defense": "m",
                "label": "M",
                "n_test": 20,
                "clean_accuracy": acc,
                "n_robust": 10,
                "robust_accuracy": robust,
                "cost_multiplier": 1.0,
            }
        ],  # fmt: skip
    }


def test_every_table_row_carries_its_rates_per_seed_their_spread_and_the_pooled_rate(tmp_path: Path) -> None:
    from dfrobust.report.seeds_report import write_seeds_report

    run = tmp_path / "r"
    write_json(run / "seeds.json", {"seeds": [3, 7], "runs": {"3": "seed-3", "7": "seed-7"}})
    write_json(run / "seed-3" / "report" / "results.json", _seed_results(0.5, 0.2, extra_row=True))
    write_json(run / "seed-7" / "report" / "results.json", _seed_results(0.75, None, extra_row=False))
    results = read_json(write_seeds_report(run) / "results.json")
    (t1,) = results["table1"]
    assert t1["model"] == "m" and t1["per_seed"]["accuracy"] == {"3": 0.5, "7": 0.75} and t1["per_seed"]["auroc"] == {"3": 0.9, "7": 0.9}
    assert "input_grad_norm" not in t1["per_seed"]  # no rate
    acc = t1["spread"]["accuracy"]
    assert (acc["mean"], acc["min"], acc["max"], acc["n"]) == (0.625, 0.5, 0.75, 2)
    assert (acc["pooled"]["k"], acc["pooled"]["n"]) == (25, 40) and acc["pooled"]["rate"] == 0.625  # 10 of 20 and 15 of 20
    lo, hi = acc["pooled"]["interval"]
    assert 0.46 < lo < 0.5 < 0.75 < hi < 0.78 and t1["spread"]["auroc"]["pooled"] is None  # AUROC has no count
    assert t1["spread"]["real_recall"]["pooled"]["n"] == 20  # its own count where results.json records one (real_recall_n)
    fgsm, cw = results["table2"]
    assert fgsm["attack"] == "fgsm" and fgsm["per_seed"]["perturbed_accuracy"] == {"3": 0.25, "7": 0.375}
    assert fgsm["spread"]["success_rate_on_correct"]["pooled"]["n"] == 16  # its own count: n_correct
    assert cw["per_seed"]["perturbed_accuracy"] == {"3": 0.0, "7": None} and cw["spread"]["perturbed_accuracy"]["n"] == 1
    (board,) = results["leaderboard"]
    assert board["per_seed"]["robust_accuracy"] == {"3": 0.2, "7": None} and board["spread"]["robust_accuracy"]["pooled"]["n"] == 10
    md = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "Table I over seeds" in md and "62.5% \\[" in md and "(n = 40)" in md and "Defense leaderboard over seeds" in md
    assert "m: FGSM whitebox" in md and "50.0%–75.0%" in md
