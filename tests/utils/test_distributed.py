"""Many processes: torchrun with 2 gloo processes on the CPU gives the outputs of one process.

Each test launches ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m dfrobust
...`` once and compares with a one-process run made in this process; a dead rank is simulated
with explicit ``--rank/--world-size`` flags.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dip_helpers import make_attack_folder
from safetensors.torch import load_file

import dfrobust
import dfrobust.studies.attack_run as experiment
from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.cli import main
from dfrobust.defenses.dip import DipConfig
from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study
from dfrobust.models.checkpoint import load_detector, read_sidecar
from dfrobust.train import loop
from dfrobust.train.config import TrainConfig
from dfrobust.utils.io import read_csv, read_json

#: Keys of a summary that may differ between a sharded and a one-process run.
RUN_KEYS = {"world_size", "ranks", "versions", "timing", "crafting", "seconds"}


#: A rank that has finished its work sometimes aborts in gloo's teardown at exit (a known race of
#: torch's gloo threads, seen about once in three full suites); the work itself is resumable.
GLOO_EXIT_ABORT = "terminate called without an active exception"


def run_ranks(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a torchrun command; once more (resuming its finished parts) if a rank aborted in gloo's exit teardown."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and GLOO_EXIT_ABORT in done.stderr:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    return done


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m dfrobust ARGS`` with this tree's dfrobust; fails the test on an error."""
    src = str(Path(dfrobust.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
           "DFROBUST_QUIET": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", "dfrobust", *args]
    done = run_ranks(cmd, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(path)]


def _without_timing(obj: object) -> object:
    """``obj`` without the keys that depend on who ran it and how fast (:data:`RUN_KEYS`, ``seconds_per_image``)."""
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in RUN_KEYS and k != "seconds_per_image"}
    return obj


ATTACK = AttackConfig("pgd", {"eps": 0.05, "steps": 2}, batch_size=3, classes="both", max_images=16, device="cpu")
ATTACK_ARGS = ["--attack", "pgd", "--eps", "0.05", "--steps", "2", "--batch-size", "3", "--classes", "both", "--max-images", "16",
               "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def attack_reference(toy_dataset: Path, toy_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "one"
    run_attack(toy_dataset, toy_model, [toy_model], ATTACK, out)
    return out


def test_torchrun_attack_equals_one_process(attack_reference: Path, toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    torchrun("attack", "--data", str(toy_dataset), "--source", str(toy_model), *ATTACK_ARGS, "--out", str(out))
    assert _rows(out / "results.csv") == _rows(attack_reference / "results.csv")
    assert read_csv(out / "table2.csv") == read_csv(attack_reference / "table2.csv")
    one, two = read_json(attack_reference / "summary.json"), read_json(out / "summary.json")
    assert _without_timing(two) == _without_timing(one)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert sorted(r["rank"] for r in two["ranks"]) == [0, 1] and sum(r["images"] for r in two["ranks"]) == 16
    marks = [read_json(p) for p in sorted((out / "parts").glob("part-*.json"))]
    assert len(marks) == 6 and {m["rank"] for m in marks} == {0, 1}  # each batch done once, by one rank
    assert (out / "fig3.png").is_file()  # rank 0 drew it


def test_a_dead_rank_leaves_its_parts_and_a_rerun_completes_the_rest(
    attack_reference: Path,
    toy_dataset: Path,
    toy_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    base = ["attack", "--data", str(toy_dataset), "--source", str(toy_model), *ATTACK_ARGS, "--out", str(out)]
    assert main([*base, "--rank", "0", "--world-size", "2"]) == 0  # rank 1 of 2 died before doing anything
    assert "rank 0 of 2: 3/6 batches" in capsys.readouterr().out
    assert not (out / "results.csv").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("part-*.json")}
    assert len(stamps) == 3

    crafted: list[int] = []
    real = experiment.attack_batch
    monkeypatch.setattr(experiment, "attack_batch", lambda *a: crafted.append(a[1]) or real(*a))
    assert main(base) == 0  # the same command on one process finishes only the missing batches
    assert len(crafted) == 3 and not {f"part-{k:05d}.json" for k in crafted} & set(stamps)
    assert {p: (out / "parts" / p).stat().st_mtime_ns for p in stamps} == stamps
    assert _rows(out / "results.csv") == _rows(attack_reference / "results.csv")
    ranks = read_json(out / "summary.json")["ranks"]
    assert [(r["world_size"], r["rank"]) for r in ranks] == [(1, 0), (2, 0)] and sum(r["images"] for r in ranks) == 16


def test_torchrun_evaluate_equals_one_process(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--data", str(toy_dataset), "--model", str(toy_model), "--batch-size", "5", "--workers", "0", "--device", "cpu"]
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    done = torchrun(*args, "--json", str(tmp_path / "two.json"))
    assert read_json(tmp_path / "two.json") == read_json(tmp_path / "one.json")
    assert done.stdout.count("accuracy") == 1  # only rank 0 prints


def test_torchrun_purify_equals_one_process(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    adv = [make_attack_folder(tmp_path / "fgsm-wb", toy_dataset, toy_model, "fgsm", "whitebox")]
    dip = DipConfig(iterations=4, record_every=2, channels_down=(4, 8), channels_up=(4, 8), channels_skip=(0, 2), input_channels=6)
    cfg = DipStudyConfig(dip=dip, per_category=2, classify_at=4, batch_size=2, device="cpu")
    one = run_dip_study(toy_dataset, toy_model, adv, tmp_path / "one", cfg)
    # the CLI's network is the default one: run the study function under torchrun through a tiny script
    script = tmp_path / "study.py"
    script.write_text(
        "import sys\n"
        "from dfrobust.defenses.dip import DipConfig\n"
        "from dfrobust.studies.dip_study import DipStudyConfig, run_dip_study\n"
        f"dip = DipConfig(**{dataclasses.asdict(dip)!r})\n"
        f"cfg = DipStudyConfig(dip=dip, per_category=2, classify_at=4, batch_size=2, device='cpu')\n"
        f"run_dip_study({str(toy_dataset)!r}, {str(toy_model)!r}, [{str(adv[0])!r}], {str(tmp_path / 'two')!r}, cfg)\n"
    )
    src = str(Path(dfrobust.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "DFROBUST_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = run_ranks(cmd, env)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("trajectories.csv", "predictions.csv", "table3.csv", "table4.csv", "sweep.csv", "figures.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    two = read_json(tmp_path / "two" / "summary.json")
    assert _without_timing(two) == _without_timing(one)
    assert two["world_size"] == 2 and sum(r["images"] for r in two["ranks"]) == one["n_images"]
    assert sorted(r["rank"] for r in two["ranks"]) == [0, 1]


TRAIN = {"arch": "tiny", "epochs": 2, "batch_size": 12, "lr": 0.05, "val_fraction": 0.25, "device": "cpu",
         "amp": False, "blur_fraction": 0.5}  # fmt: skip


def _train_args(data: Path, out: Path, cfg: TrainConfig) -> list[str]:
    args = ["train", "--data", str(data), "--out", str(out)]
    for key, value in dataclasses.asdict(cfg).items():
        default = TrainConfig.__dataclass_fields__[key].default
        if value == default or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        args += [f"--no-{flag[2:]}"] if value is False else [flag] if value is True else [flag, str(value)]
    return args


def _weights_close(a: Path, b: Path, atol: float) -> float:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert diff <= atol, diff
    return diff


def test_ddp_training_equals_one_process_at_the_same_global_batch(toy_dataset: Path, tmp_path: Path) -> None:
    """Lipschitz double backprop (Rademacher signs) and blur augmentation; tiny has no BatchNorm, so the
    only difference is the order of floating-point sums (the two halves' gradients are averaged)."""
    cfg = TrainConfig(**TRAIN, lipschitz=5.0)
    one = loop.train_detector(toy_dataset, cfg, tmp_path / "one.safetensors")
    torchrun(*_train_args(toy_dataset, tmp_path / "two.safetensors", cfg))
    two = read_sidecar(tmp_path / "two.safetensors")
    _weights_close(tmp_path / "one.safetensors", tmp_path / "two.safetensors", atol=1e-5)
    assert two["world_size"] == 2 and one["world_size"] == 1
    for r1, r2 in zip(one["history"], two["history"]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], abs=1e-5)
        assert r2["train_penalty"] == pytest.approx(r1["train_penalty"], rel=1e-4)
        assert r2["train_accuracy"] == r1["train_accuracy"]
    assert not (tmp_path / "two.partial.safetensors").exists()
    load_detector(tmp_path / "two.safetensors")


def test_ddp_training_stops_early_on_every_rank_as_one_process(toy_dataset: Path, tmp_path: Path) -> None:
    """Rank 0 decides to stop (patience) and the other rank leaves the loop with it: no hang, the same epochs."""
    cfg = TrainConfig(**{**TRAIN, "epochs": 6}, patience=1)
    one = loop.train_detector(toy_dataset, cfg, tmp_path / "one.safetensors")
    torchrun(*_train_args(toy_dataset, tmp_path / "two.safetensors", cfg))
    two = read_sidecar(tmp_path / "two.safetensors")
    assert one["metrics"]["stopped_early"] is not None, "the toy run should stop before its 6 epochs"
    assert [h["epoch"] for h in two["history"]] == [h["epoch"] for h in one["history"]]
    assert two["metrics"]["stopped_early"]["epoch"] == one["metrics"]["stopped_early"]["epoch"]


def test_ddp_adversarial_training_resumes_with_another_world_size(
    toy_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRADES under DDP: one process is killed after epoch 1, two processes finish epoch 2 from its state."""
    cfg = TrainConfig(**TRAIN, adversarial="trades", adv_steps=2)
    loop.train_detector(toy_dataset, cfg, tmp_path / "one.safetensors")
    real = loop.train_one_epoch

    def killed_in_epoch_2(*args: object, **kwargs: object) -> dict:
        if args[4] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        loop.train_detector(toy_dataset, cfg, tmp_path / "two.safetensors")
    assert (tmp_path / "two.partial.safetensors").is_file()
    done = torchrun(*_train_args(toy_dataset, tmp_path / "two.safetensors", cfg))
    assert "resuming two.safetensors after epoch 1" in done.stdout + done.stderr
    two = read_sidecar(tmp_path / "two.safetensors")
    assert two["world_size"] == 2 and two["adversarial"]["method"] == "trades" and len(two["history"]) == 2
    # sign steps can flip on rounding-level differences: close, not equal
    _weights_close(tmp_path / "one.safetensors", tmp_path / "two.safetensors", atol=1e-3)
    model, _ = load_detector(tmp_path / "two.safetensors")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2)


@pytest.mark.slow
def test_torchrun_reproduce_shares_every_stage_and_matches_one_process(tmp_path: Path) -> None:
    small = ["--set", "train.lipschitz.lambdas=[5.0]", "--set", "train.hardened.roles=[]", "--set", 'attack.attacks=["fgsm"]']
    from dfrobust.cli import main

    assert main(["reproduce", "--preset", "tiny", "--run", str(tmp_path / "one"), "--device", "cpu", *small]) == 0
    torchrun("reproduce", "--preset", "tiny", "--run-dir", str(tmp_path / "two"), "--device", "cpu", *small)
    for model in ("vgg16", "resnet18"):
        one, two = (read_json(tmp_path / r / "models" / f"{model}.json") for r in ("one", "two"))
        assert two["world_size"] == 2 and abs(one["metrics"]["test"]["accuracy"] - two["metrics"]["test"]["accuracy"]) < 1e-9
    assert read_json(tmp_path / "two" / "dip" / "summary.json")["world_size"] == 2
    assert (tmp_path / "two" / "report" / "report.html").is_file()
