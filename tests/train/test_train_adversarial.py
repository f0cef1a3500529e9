"""Adversarial training (PGD-AT, fast AT, TRADES), noise augmentation, and the train flags generated from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_toy_dataset
from dfrobust.attacks import make_attack
from dfrobust.cli import main
from dfrobust.commands.dataclass_args import flag
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, read_sidecar
from dfrobust.models.detectors import build_detector
from dfrobust.train import adversarial, loop, steps
from dfrobust.train.config import TrainConfig
from dfrobust.train.cost import COST_BATCHES, measure_cost
from dfrobust.train.loop import train_detector
from dfrobust.train.state import partial_path

QUICK = dict(arch="tiny", epochs=2, lr=0.05, batch_size=8, val_fraction=0.25)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 px toy data: 8 images per class and split."""
    return make_toy_dataset(tmp_path_factory.mktemp("small") / "data", n_per_class_split=8, size=16)


def pgd_accuracy(model_path: Path, data: Path, eps: float) -> tuple[float, float]:
    """(clean accuracy, PGD-20 accuracy) on the test split."""
    model, _ = load_detector(model_path)
    test = load_split(data, "test")
    x, y = test.images(), test.y
    clean = (model(x).argmax(1) == y).float().mean().item()
    result = make_attack("pgd", eps=eps, steps=20, step_size=eps / 8, seed=1)(model, x, y)
    return clean, 1.0 - result.success.float().mean().item()


def test_pgd_training_is_more_robust_than_plain_training(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    # the same fine-tuning of the same plain detector, with and without PGD-AT (the resnet18-at recipe)
    tune = dict(arch="tiny", epochs=8, optimizer="adam", lr=0.005, batch_size=8, val_fraction=0.25, resume_from=str(toy_model))
    train_detector(toy_dataset, TrainConfig(**tune), tmp_path / "plain.safetensors")
    meta = train_detector(toy_dataset, TrainConfig(**tune, adversarial="pgd"), tmp_path / "at.safetensors")
    adv = meta["adversarial"]
    # 32 px images: the small-image default eps 8/255, 7 steps of eps/4, examples made in eval mode (Madry et al.)
    assert (adv["method"], adv["eps"], adv["eps_source"], adv["steps"]) == ("pgd", 8 / 255, "image size", 7)
    assert adv["step_size"] == pytest.approx(2 / 255) and adv["example_batchnorm"] == "eval" and adv["beta"] is None
    assert adv["cost_multiplier"] > 1 and adv["plain_step_seconds"] > 0
    assert meta["metrics"]["selection"].startswith("best held-out robust accuracy (PGD, APGD-CE and FGSM all fail)")
    keys = {f"heldout_{k}_accuracy" for k in ("pgd", "apgd", "fgsm", "robust")}
    assert all(keys <= set(h) for h in meta["history"])
    # an image counts as robust only if every attack failed on it: never above any single attack's accuracy
    assert all(h["heldout_robust_accuracy"] <= min(h[k] for k in keys) + 1e-9 for h in meta["history"])
    plain_clean, plain_pgd = pgd_accuracy(tmp_path / "plain.safetensors", toy_dataset, 8 / 255)
    at_clean, at_pgd = pgd_accuracy(tmp_path / "at.safetensors", toy_dataset, 8 / 255)
    assert at_clean >= 0.9 and plain_clean >= 0.9
    assert at_pgd >= plain_pgd + 0.1, (at_pgd, plain_pgd)


def test_fast_and_trades_run_and_record_their_settings(small_data: Path, tmp_path: Path) -> None:
    fast = train_detector(small_data, TrainConfig(**QUICK, adversarial="fast", adv_eps=0.05), tmp_path / "fast.safetensors")
    adv = fast["adversarial"]
    assert (adv["method"], adv["eps"], adv["eps_source"], adv["steps"]) == ("fast", 0.05, "given", 1)
    assert adv["step_size"] == pytest.approx(1.25 * 0.05) and adv["example_batchnorm"] == "train"
    assert adv["check"]["pgd_steps"] == 7 and adv["catastrophic_overfitting"] is None
    assert adv["cost_multiplier"] > 0 and adv["batches"] == COST_BATCHES
    assert fast["training"]["adversarial"] == "fast" and fast["training"]["adv_eps"] == 0.05

    trades = train_detector(
        small_data, TrainConfig(**QUICK, adversarial="trades", trades_beta=3.0, adv_steps=2), tmp_path / "trades.safetensors"
    )
    adv = trades["adversarial"]
    assert (adv["method"], adv["beta"], adv["steps"], adv["example_batchnorm"]) == ("trades", 3.0, 2, "eval")
    assert adv["eps"] == 8 / 255 and adv["step_size"] == pytest.approx(2 / 255)
    # the KL term is the recorded penalty: positive once examples move the prediction
    assert all(h["train_penalty"] > 0 for h in trades["history"])


def test_recipes_follow_their_papers_batchnorm_and_bounds() -> None:
    assert adversarial.default_eps((128, 160)) == 4 / 255 and adversarial.default_eps((64, 200)) == 8 / 255
    assert adversarial.recipe_for(TrainConfig(), (32, 32)) is None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 2, (6,))
    model(x)
    bn = model[1]
    for method, moves_stats in (("pgd", False), ("fast", True), ("trades", False)):
        recipe = adversarial.recipe_for(TrainConfig(adversarial=method, adv_eps=0.03), (8, 8))
        model.train()
        before = bn.running_mean.clone()
        x_adv = recipe.examples(model, x, y, torch.Generator().manual_seed(1))
        # eval-mode example generation leaves BatchNorm's running statistics alone; train mode updates them
        assert (not torch.equal(before, bn.running_mean)) == moves_stats, method
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert (x_adv - x).abs().max() <= 0.03 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
        # the random start comes from the generator: the same generator state gives the same examples
        again = recipe.examples(model.eval(), x, y, torch.Generator().manual_seed(1))
        assert torch.equal(again, recipe.examples(model.eval(), x, y, torch.Generator().manual_seed(1)))


def test_catastrophic_overfitting_is_logged_recorded_and_not_selected(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = iter(
        [
            {"pgd_accuracy": 0.6, "fgsm_accuracy": 0.6},
            {"pgd_accuracy": 0.1, "fgsm_accuracy": 0.9},
            {"pgd_accuracy": 0.2, "fgsm_accuracy": 0.95},
        ]
    )
    monkeypatch.setattr(loop, "robustness_check", lambda *args: next(checks))
    lines: list[str] = []
    meta = train_detector(
        small_data, TrainConfig(**{**QUICK, "epochs": 3}, adversarial="fast"), tmp_path / "m.safetensors", log=lines.append
    )
    event = meta["adversarial"]["catastrophic_overfitting"]
    assert (event["epoch"], event["pgd_acc"], event["fgsm_acc"], event["best_epoch"]) == (2, 0.1, 0.9, 1)
    assert sum("catastrophic overfitting" in line for line in lines) == 1
    assert meta["metrics"]["selected_epoch"] == 1
    assert not adversarial.collapsed({"pgd_accuracy": 0.1, "fgsm_accuracy": 0.5}, {"pgd_accuracy": 0.6, "fgsm_accuracy": 0.6})
    assert not adversarial.collapsed({"pgd_accuracy": 0.4, "fgsm_accuracy": 0.9}, {"pgd_accuracy": 0.6, "fgsm_accuracy": 0.6})


@pytest.mark.parametrize("method", ["fast", "trades"])
def test_interrupted_adversarial_training_resumes_to_the_same_weights(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    cfg = TrainConfig(**{**QUICK, "epochs": 3}, adversarial=method, adv_steps=2)
    straight = train_detector(small_data, cfg, tmp_path / "straight.safetensors")
    real_epoch = loop.train_one_epoch

    def interrupt_at_epoch_3(*args, **kwargs):
        if args[4] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    out = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(loop, "train_one_epoch", interrupt_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_detector(small_data, cfg, out)
    assert partial_path(out).is_file()
    monkeypatch.setattr(loop, "train_one_epoch", real_epoch)
    resumed = train_detector(small_data, cfg, out)
    a, b = load_file(str(tmp_path / "straight.safetensors")), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(straight["history"])
    # the cost measured in the first session is kept, not measured again
    assert resumed["adversarial"] == {
        **straight["adversarial"],
        **{k: resumed["adversarial"][k] for k in ("plain_step_seconds", "adversarial_step_seconds", "cost_multiplier")},
    }


def test_measuring_the_cost_changes_nothing(small_data: Path) -> None:
    cfg = TrainConfig(**QUICK, adversarial="pgd", adv_steps=2)
    train = load_split(small_data, "train")
    model = build_detector("tiny").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cost = measure_cost(model, cfg, train, steps.build_augment(cfg, 16), torch.device("cpu"), n_batches=1)
    assert cost["batches"] == 1 and cost["cost_multiplier"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_noise_augmentation_trains_and_changes_the_model(small_data: Path, tmp_path: Path) -> None:
    plain = train_detector(small_data, TrainConfig(**QUICK), tmp_path / "plain.safetensors")
    noisy = train_detector(small_data, TrainConfig(**QUICK, noise_sigma=0.25), tmp_path / "noisy.safetensors")
    assert noisy["training"]["noise_sigma"] == 0.25 and "adversarial" not in noisy and "adversarial" not in plain
    a, b = load_file(str(tmp_path / "plain.safetensors")), load_file(str(tmp_path / "noisy.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_config_errors_are_one_line() -> None:
    for kwargs, message in (
        ({"adversarial": "free"}, "unknown adversarial training"),
        ({"adversarial": "pgd", "lipschitz": 5.0}, "cannot be combined"),
        ({"adversarial": "pgd", "noise_sigma": 0.25}, "cannot be combined"),
        ({"adv_eps": 0.03}, "only apply to adversarial training"),
        ({"adversarial": "fast", "trades_beta": 3.0}, "applies to --adversarial trades"),
        ({"adversarial": "pgd", "adv_eps": 2.0}, "--adv-eps"),
        ({"adversarial": "pgd", "adv_steps": 0}, "--adv-steps"),
        ({"noise_sigma": -1.0}, "--noise-sigma"),
    ):
        with pytest.raises(DfrobustError, match=message):
            TrainConfig(**kwargs)
    # the new settings are always part of the identity
    assert {"adversarial", "adv_eps", "adv_steps", "trades_beta", "noise_sigma"} <= set(TrainConfig().identity())


def test_train_flags_come_from_the_config_fields(small_data: Path, tmp_path: Path) -> None:
    from dfrobust.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    assert "adversarial" not in {a.dest for a in sub._actions}  # added when the subcommand is used
    assert "--adversarial" in sub.format_help()
    by_dest = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(TrainConfig):
        action = by_dest[f.name]
        assert f.metadata["help"].split()[0] in action.help
        if f.metadata.get("inherit"):
            assert action.default is None and f"default: {f.default}," in action.help
        elif isinstance(f.default, bool):
            assert action.default is f.default and action.option_strings == [("--no-" if f.default else "--") + f.name.replace("_", "-")]
        else:
            assert action.option_strings == [flag(f.name)] and action.default == f.default
            assert f.default is None or "(default: " in action.help
    out = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "train",
                "--data",
                str(small_data),
                "--arch",
                "tiny",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--adversarial",
                "fast",
                "--adv-eps",
                "0.04",
                "--device",
                "cpu",
                "--blur-sigma",
                "2",
                "4",
            ]
        )
        == 0
    )
    meta = read_sidecar(out)
    assert meta["training"]["adversarial"] == "fast" and meta["training"]["adv_eps"] == 0.04
    assert meta["training"]["blur_sigma"] == [2.0, 4.0] and meta["adversarial"]["eps"] == 0.04
    assert main(["train", "--data", str(small_data), "--arch", "tiny", "--out", str(out), "--adv-steps", "3"]) == 2


def test_building_the_cli_imports_no_settings_module() -> None:
    code = "import sys; from dfrobust.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "False"
