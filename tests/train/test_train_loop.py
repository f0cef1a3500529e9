"""The training loop: config, validation split, model selection, resume, skip, checks and errors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_toy_dataset
from dfrobust.data.dataset import load_split
from dfrobust.data.manifest import DatasetWriter, manifest_hash
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from dfrobust.models.detectors import build_detector
from dfrobust.train import loop, steps
from dfrobust.train.config import TrainConfig
from dfrobust.train.loop import carve_validation, train_detector
from dfrobust.train.state import optimizer_tensors, partial_path, restore_optimizer

QUICK = dict(arch="tiny", epochs=3, lr=0.05, batch_size=8, val_fraction=0.25)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 px toy data: 8 images per class and split."""
    return make_toy_dataset(tmp_path_factory.mktemp("small") / "data", n_per_class_split=8, size=16)


def test_config_has_paper_defaults_and_serialises() -> None:
    cfg = TrainConfig()
    assert (cfg.arch, cfg.lr, cfg.momentum, cfg.batch_size, cfg.epochs) == ("resnet18", 1e-3, 0.9, 16, 5)
    assert (cfg.weight_decay, cfg.normalization, cfg.init, cfg.lipschitz, cfg.blur_fraction) == (0.0, "none", None, 0.0, 0.0)
    assert cfg.hflip and cfg.blur_sigma == (3.0, 5.0) and cfg.blur_reference_width == 300
    text = json.dumps(asdict(cfg))
    assert TrainConfig.from_dict(json.loads(text)) == cfg
    with pytest.raises(DfrobustError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(DfrobustError, match="not both"):
        TrainConfig(init="a.pth", resume_from="b.safetensors")
    with pytest.raises(DfrobustError, match="val-fraction"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(DfrobustError, match="unknown optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_the_optimizer_is_the_configured_one() -> None:
    model = build_detector("tiny")
    sgd = steps.make_optimizer(model, TrainConfig(lr=0.1, momentum=0.8))
    adam = steps.make_optimizer(model, TrainConfig(optimizer="adam", lr=0.01, weight_decay=1e-4))
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.8
    assert type(adam) is torch.optim.Adam and (adam.param_groups[0]["lr"], adam.param_groups[0]["weight_decay"]) == (0.01, 1e-4)
    # the optimizer decides the result, so it is part of the identity; the execution fields are not
    assert TrainConfig().identity()["optimizer"] == "sgd" and TrainConfig(optimizer="adam").identity()["optimizer"] == "adam"
    assert TrainConfig(device="cpu", eval_batch_size=7).identity() == TrainConfig().identity()


def test_validation_split_is_stratified_seeded_and_disjoint(toy_dataset: Path) -> None:
    train = load_split(toy_dataset, "train")
    fit, val = carve_validation(train, 0.25, seed=4)
    assert val is not None
    assert sorted(val.y.tolist()) == [0] * 6 + [1] * 6
    assert not set(fit.paths) & set(val.paths) and len(fit) + len(val) == len(train)
    assert carve_validation(train, 0.25, seed=4)[1].paths == val.paths
    assert carve_validation(train, 0.25, seed=5)[1].paths != val.paths
    assert carve_validation(train, 0.0, seed=4) == (train, None)


def test_optimizer_state_round_trips_through_tensors() -> None:
    model = build_detector("tiny")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    tensors, info = optimizer_tensors(opt)
    assert tensors and all(k.startswith("optim.") for k in tensors)
    json.dumps(info)  # the rest is plain JSON
    fresh = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.1)
    restore_optimizer(fresh, tensors, info)
    assert fresh.param_groups[0]["lr"] == 0.1 and fresh.param_groups[0]["momentum"] == 0.9
    for p in model.parameters():
        assert torch.equal(fresh.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])


def test_sidecar_records_everything_and_selection_uses_validation(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    meta = train_detector(small_data, TrainConfig(**QUICK), out)
    assert out.is_file() and not partial_path(out).exists()
    assert meta["arch"] == "tiny" and meta["input_size"] == [16, 16] and meta["normalization"] == "none"
    assert meta["training"] == TrainConfig(**QUICK).to_dict()
    assert meta["data"]["manifest_hash"] == manifest_hash(small_data)
    assert (meta["data"]["n_train"], meta["data"]["n_val"], meta["data"]["n_test"]) == (12, 4, 16)
    assert meta["seed"] == 0 and meta["wall_seconds"] > 0 and "torch" in meta["versions"]
    metrics = meta["metrics"]
    for split, n in (("val", 4), ("test", 16)):
        assert metrics[split]["n"] == n and 0 <= metrics[split]["accuracy"] <= 1
        assert metrics[split]["input_grad_norm"] > 0 and len(metrics[split]["confusion"]) == 2
    history = meta["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert metrics["selected_epoch"] == best["epoch"]
    # the saved weights are the selected epoch's: their validation accuracy is the recorded one
    assert metrics["val"]["accuracy"] == pytest.approx(best["val_accuracy"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_interrupted_training_resumes_to_the_same_weights(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimizer: str
) -> None:
    cfg = TrainConfig(**QUICK, blur_fraction=0.5, lipschitz=1.0, lipschitz_estimator="rademacher", optimizer=optimizer)
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
    assert not out.exists() and partial_path(out).is_file()
    monkeypatch.setattr(loop, "train_one_epoch", real_epoch)
    resumed = train_detector(small_data, cfg, out)
    a, b = load_file(str(tmp_path / "straight.safetensors")), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(straight["history"])
    assert not partial_path(out).exists()


def test_finished_model_is_not_retrained(small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m.safetensors"
    first = train_detector(small_data, TrainConfig(**QUICK), out)

    def boom(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(loop, "train_one_epoch", boom)
    assert train_detector(small_data, TrainConfig(**QUICK, device="cpu"), out) == first
    # a sidecar written before the optimizer setting existed still counts as SGD's
    sidecar = out.with_suffix(".json")
    old = json.loads(sidecar.read_text())
    del old["training"]["optimizer"]
    sidecar.write_text(json.dumps(old))
    assert train_detector(small_data, TrainConfig(**QUICK), out)["training"] == old["training"]
    for other in ({"seed": 1}, {"optimizer": "adam"}):
        with pytest.raises(AssertionError, match="trained again"):
            train_detector(small_data, TrainConfig(**{**QUICK, **other}), out)


def test_resume_from_continues_an_existing_model(small_data: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.safetensors"
    train_detector(small_data, TrainConfig(**QUICK), base)
    cfg = TrainConfig(**{**QUICK, "epochs": 1, "val_fraction": 0.0, "lr": 1e-9}, resume_from=str(base), blur_fraction=0.4)
    meta = train_detector(small_data, cfg, tmp_path / "blur.safetensors")
    assert meta["sources"]["resume_from"]["path"] == str(base) and meta["metrics"]["selected_epoch"] == 1
    start, _ = load_detector(base)
    cont, _ = load_detector(tmp_path / "blur.safetensors")
    # lr ~ 0: the continued model starts from the base weights, not from a fresh init
    for (name, p), q in zip(start.named_parameters(), cont.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    with pytest.raises(DfrobustError, match="resnet18 was expected"):
        train_detector(small_data, TrainConfig(**{**QUICK, "arch": "resnet18"}, resume_from=str(base)), tmp_path / "x.safetensors")
    bigger = make_toy_dataset(tmp_path / "big", n_per_class_split=4, size=24)
    with pytest.raises(DfrobustError, match="trained on 16x16"):
        train_detector(bigger, TrainConfig(**QUICK, resume_from=str(base)), tmp_path / "y.safetensors")


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DfrobustError, match="does not exist"):
        train_detector(tmp_path / "nowhere", TrainConfig(**QUICK), tmp_path / "m.safetensors")
    with pytest.raises(DfrobustError, match="safetensors"):
        train_detector(tmp_path, TrainConfig(**QUICK), tmp_path / "m.pt")
    only_real = tmp_path / "only_real"
    with DatasetWriter(only_real, created_by={"test": True}) as w:
        for split in ("train", "test"):
            for _ in range(3):
                w.add(torch.rand(3, 16, 16), label=1, split=split)
    with pytest.raises(DfrobustError, match="no fake images"):
        train_detector(only_real, TrainConfig(**QUICK), tmp_path / "m.safetensors")


def _plateau_after(monkeypatch: pytest.MonkeyPatch, best: int) -> list[int]:
    """Validation accuracy rises until epoch ``best``, then falls (the evaluation is faked per call); returns the
    epochs trained, appended by the real ``train_one_epoch``."""
    trained: list[int] = []
    real_epoch, real_eval = loop.train_one_epoch, loop.evaluate_detector

    def epoch(*args, **kwargs):
        trained.append(args[4])
        return real_epoch(*args, **kwargs)

    def evaluate(model, images, *args, **kwargs):
        out = real_eval(model, images, *args, **kwargs)
        if kwargs.get("gradients") is False:  # the per-epoch validation only
            e = trained[-1]
            out = {**out, "accuracy": 0.5 + 0.1 * min(e, best) - 0.05 * max(e - best, 0), "loss": 1.0}
        return out

    monkeypatch.setattr(loop, "train_one_epoch", epoch)
    monkeypatch.setattr(loop, "evaluate_detector", evaluate)
    return trained


def test_patience_stops_at_the_best_epoch_and_keeps_its_weights(small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = _plateau_after(monkeypatch, best=2)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    real_save = loop.save_partial

    def save(path, model, *args, **kwargs):  # the weights after every epoch, to compare with the saved model
        kept[len(trained)] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real_save(path, model, *args, **kwargs)

    monkeypatch.setattr(loop, "save_partial", save)
    cfg = TrainConfig(**{**QUICK, "epochs": 8}, patience=2)
    out = tmp_path / "m.safetensors"
    meta = train_detector(small_data, cfg, out)
    assert trained == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2: 4 of 8 epochs saved
    stopped = meta["metrics"]["stopped_early"]
    assert stopped["epoch"] == 4 and stopped["best_epoch"] == 2 and stopped["patience"] == 2 and stopped["epochs_saved"] == 4
    assert "patience 2" in stopped["reason"] and meta["metrics"]["selected_epoch"] == 2
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    saved = load_file(str(out))
    assert all(torch.equal(saved[k], kept[2][k]) for k in saved) and not all(torch.equal(saved[k], kept[4][k]) for k in saved)
    # patience 0 (the default) trains every epoch
    trained.clear()
    train_detector(small_data, TrainConfig(**{**QUICK, "epochs": 5}), tmp_path / "all.safetensors")
    assert trained == [1, 2, 3, 4, 5]


def test_a_run_interrupted_after_stopping_does_not_train_again(small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = _plateau_after(monkeypatch, best=1)
    real_save = loop.save_detector

    def crash(*args, **kwargs):  # killed after the stopping epoch's state, before the final files
        raise KeyboardInterrupt

    cfg = TrainConfig(**{**QUICK, "epochs": 6}, patience=1)
    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(loop, "save_detector", crash)
    with pytest.raises(KeyboardInterrupt):
        train_detector(small_data, cfg, out)
    assert trained == [1, 2] and partial_path(out).is_file()
    monkeypatch.setattr(loop, "save_detector", real_save)
    meta = train_detector(small_data, cfg, out)
    assert trained == [1, 2] and meta["metrics"]["stopped_early"]["epoch"] == 2 and meta["metrics"]["selected_epoch"] == 1


def test_patience_is_checked_like_every_setting() -> None:
    from dfrobust.config_checks import TRAIN_KEYS

    for bad in (-1, 1.5, True):
        with pytest.raises(DfrobustError, match="--patience must be a whole number"):
            TrainConfig(patience=bad)
    with pytest.raises(DfrobustError, match="--val-fraction"):
        TrainConfig(patience=2, val_fraction=0.0)
    assert TRAIN_KEYS["patience"](3) is None and TRAIN_KEYS["patience"](-1) is not None
    # off (the default) keeps the identity of models and run records made before the setting existed
    assert "patience" not in TrainConfig().identity() and TrainConfig(patience=2).identity()["patience"] == 2
