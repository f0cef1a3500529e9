"""Tests of the shared core: dataset folder writer/reader, checkpoints, CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfrobust.cli import main
from dfrobust.data.dataset import load_split
from dfrobust.data.manifest import manifest_hash, read_manifest, stratified_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector, save_detector
from dfrobust.models.detectors import build_detector
from dfrobust.utils.io import load_image, quantize, read_json, save_png, write_json


def test_toy_dataset_manifest_and_loading(toy_dataset: Path) -> None:
    manifest = read_manifest(toy_dataset)
    assert manifest["counts"]["train"] == {"fake": 24, "real": 24}
    assert manifest["image_size"] == [32, 32]
    test = load_split(toy_dataset, "test", classes=["fake"])
    assert len(test) == 24 and set(test.y.tolist()) == {0}
    x = test.images()
    assert x.dtype == torch.float32 and x.shape == (24, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert len(manifest_hash(toy_dataset)) == 64


def test_toy_model_learns_the_toy_task(toy_dataset: Path, toy_model: Path) -> None:
    model, meta = load_detector(toy_model)
    test = load_split(toy_dataset, "test")
    acc = (model(test.images()).argmax(1) == test.y).float().mean().item()
    assert acc >= 0.9, acc
    assert meta["arch"] == "tiny" and meta["input_size"] == [32, 32]


def test_stratified_split_keeps_class_fractions() -> None:
    labels = [0] * 40 + [1] * 80
    splits = stratified_split(labels, 0.25, seed=3)
    assert splits == stratified_split(labels, 0.25, seed=3)
    assert sum(s == "test" for s, lab in zip(splits, labels) if lab == 0) == 10
    assert sum(s == "test" for s, lab in zip(splits, labels) if lab == 1) == 20


def test_png_round_trip_is_the_quantised_tensor(tmp_path: Path) -> None:
    x = torch.rand(3, 8, 8)
    save_png(tmp_path / "a.png", x)
    assert torch.equal(load_image(tmp_path / "a.png"), quantize(x))


def test_checkpoint_mismatch_errors(tmp_path: Path, toy_model: Path) -> None:
    with pytest.raises(DfrobustError, match="resnet18 was expected"):
        load_detector(toy_model, expect_arch="resnet18")
    with pytest.raises(DfrobustError, match="trained on 32x32"):
        load_detector(toy_model, expect_input_size=(64, 64))
    with pytest.raises(DfrobustError, match="does not exist"):
        load_detector(tmp_path / "missing.safetensors")
    # weights of another architecture under a sidecar that claims "tiny"
    other = tmp_path / "other.safetensors"
    save_detector(build_detector("tiny", num_classes=2), other, {"input_size": [32, 32]})
    wide = build_detector("tiny")
    wide.backbone.fc = torch.nn.Linear(16, 3)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(other))
    with pytest.raises(DfrobustError, match="does not match the weights_sha256"):
        load_detector(other)
    side = read_json(other.with_suffix(".json"))
    del side["weights_sha256"]  # as a sidecar written before weights were hashed
    write_json(other.with_suffix(".json"), side)
    with pytest.raises(DfrobustError, match="does not match architecture"):
        load_detector(other)


def test_cli_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("data", "train", "evaluate", "attack", "purify", "report", "reproduce", "status"):
        assert name in out
