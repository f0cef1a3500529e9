"""Tests of the shared core: dataset folder writer/reader, checkpoints, CLI entry point."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from dfrobust.cli import build_parser, main
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
    del side["weights_sha256"]  # a sidecar that cannot vouch for the weights beside it is refused (issue 21)
    write_json(other.with_suffix(".json"), side)
    with pytest.raises(DfrobustError, match="has no weights_sha256"):
        load_detector(other)
    # a sidecar that hashes those weights, but of another architecture: the shapes tell
    from dfrobust.utils.io import sha256_file

    write_json(other.with_suffix(".json"), {**side, "weights_sha256": sha256_file(other)})
    with pytest.raises(DfrobustError, match="does not match architecture"):
        load_detector(other)


#: Each subcommand and flags of its own that its --help must list (the top-level help lists none of them).
COMMAND_FLAGS = {
    "data": ["synth", "faceswap", "import", "preview"],
    "train": ["--data", "--arch", "--out", "--epochs", "--lipschitz", "--blur-fraction", "--resume-from"],
    "evaluate": ["--data", "--model", "--split", "--json"],
    "attack": ["--data", "--source", "--target", "--attack", "--eps", "--out", "--survivors-of"],
    "purify": ["--data", "--model", "--adv", "--out", "--iterations", "--classify-at"],
    "report": ["run_dir"],
    "reproduce": ["--preset", "--data", "--run", "--set", "--force"],
    "status": ["--run"],
}
DATA_FLAGS = {
    "synth": ["--out", "--n", "--size"],
    "faceswap": ["--real", "--out", "--size"],
    "import": ["--out", "--size", "--test-fraction"],
    "preview": ["--out", "--per-class"],
}


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _examples(text: str) -> list[list[str]]:
    """The example command lines at the end of a help text, continuation lines joined, comments dropped."""
    assert "\nexamples:\n" in text, text
    block = text.split("\nexamples:\n", 1)[1].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip().startswith("dfrobust ")]


def _lists_option(text: str, flag: str) -> bool:
    """Whether ``flag`` starts a line of the help's argument list (not merely appears in an example)."""
    return re.search(rf"^ {{2,}}{re.escape(flag)}(?![\w-])", text.split("\nexamples:\n", 1)[0], re.M) is not None


def test_cli_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMAND_FLAGS:
        assert re.search(rf"^ {{4}}{name}\b", out, re.M), f"{name} missing from the command list"
    for example in _examples(out):
        build_parser().parse_args(example[1:])  # every top-level example parses


@pytest.mark.parametrize("name", sorted(COMMAND_FLAGS))
def test_each_command_help_has_its_flags_and_examples_that_parse(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _help([name], capsys)
    assert out.startswith(f"usage: dfrobust {name} "), out[:80]
    missing = [flag for flag in COMMAND_FLAGS[name] if not _lists_option(out, flag)]
    assert not missing, f"dfrobust {name} --help does not list {missing}"
    examples = _examples(out)
    assert examples, f"dfrobust {name} --help has no example"
    for example in examples:
        assert example[:2] == ["dfrobust", name], example
        build_parser().parse_args(example[1:])  # a wrong flag exits with status 2
    if name == "data":
        assert {ex[2] for ex in examples} >= set(DATA_FLAGS), "every data subcommand has an example"


@pytest.mark.parametrize("sub", sorted(DATA_FLAGS))
def test_each_data_subcommand_help_has_its_flags_and_examples(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["data", sub], capsys)
    assert out.startswith(f"usage: dfrobust data {sub} ")
    missing = [flag for flag in DATA_FLAGS[sub] if not _lists_option(out, flag)]
    assert not missing, f"dfrobust data {sub} --help does not list {missing}"
    examples = _examples(out)
    assert examples and all(ex[:3] == ["dfrobust", "data", sub] for ex in examples), examples
    for example in examples:
        build_parser().parse_args(example[1:])
