"""Evaluation (Table I metrics) on hand-checked cases, and `dfrobust train` + `dfrobust evaluate` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import make_toy_dataset
from dfrobust.cli import main
from dfrobust.data.dataset import ImageSet
from dfrobust.evaluate.evaluation import evaluate_detector, format_metrics_table
from dfrobust.models.checkpoint import read_sidecar


class MeanScorer(nn.Module):
    """Logits (0, logit(t)) where t is the image's mean pixel: P(real) = t exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(t), torch.log(t / (1 - t)) + self.dummy], 1)


def constant_images(levels: list[int], labels: list[int], size: int = 4) -> ImageSet:
    x = torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, size, size).contiguous()
    return ImageSet(x, torch.tensor(labels), [f"img{i}.png" for i in range(len(levels))])


def test_metrics_on_a_hand_checked_case() -> None:
    levels = [26, 153, 178, 230]  # P(real) = level / 255: 0.10, 0.60, 0.70, 0.90
    images = constant_images(levels, [0, 0, 1, 1])
    m = evaluate_detector(MeanScorer(), images, batch_size=3)
    # predictions real, real? -> 0.10 fake, 0.60 real, 0.70 real, 0.90 real
    assert m["accuracy"] == 0.75 and m["confusion"] == [[1, 1], [0, 2]]
    assert m["fake_precision"] == 1.0 and m["fake_recall"] == 0.5
    assert m["real_precision"] == pytest.approx(2 / 3) and m["real_recall"] == 1.0
    assert m["auroc"] == 1.0  # every real scores above every fake
    p = [v / 255 for v in levels]
    ce = -(math.log(1 - p[0]) + math.log(1 - p[1]) + math.log(p[2]) + math.log(p[3])) / 4
    assert m["loss"] == pytest.approx(ce, rel=1e-5)
    # d logit(t) / dx = 1 / (t (1 - t) N) per pixel -> norm 1 / (t (1 - t) sqrt(N)); logit 0 is constant
    n_pix = 3 * 4 * 4
    expected = sum(1 / (t * (1 - t) * math.sqrt(n_pix)) for t in p) / 4
    assert m["input_grad_norm"] == pytest.approx(expected, rel=1e-4)
    # a stricter threshold flips the 0.60 and 0.70 images
    strict = evaluate_detector(MeanScorer(), images, threshold=0.75, gradients=False)
    assert strict["confusion"] == [[2, 0], [1, 1]] and strict["input_grad_norm"] is None


def test_single_class_set_has_no_auroc_and_model_mode_is_restored() -> None:
    model = MeanScorer().train()
    m = evaluate_detector(model, constant_images([200, 220], [1, 1]), gradients=False)
    assert m["auroc"] is None and m["accuracy"] == 1.0 and model.training


def test_a_wrapper_in_train_mode_leaves_the_wrapped_detector_in_eval_mode() -> None:
    """Each submodule gets its own mode back: ``model.train(was)`` on the wrapper put the inner BatchNorm in train mode."""
    inner = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    wrapper = nn.Sequential(inner)  # a new Module starts in train mode
    assert wrapper.training and not inner.training
    evaluate_detector(wrapper, constant_images([40, 200], [0, 1]), gradients=False)
    assert wrapper.training and not any(m.training for m in inner.modules())


def test_table_lists_metrics_per_column() -> None:
    text = format_metrics_table({"a": {"n": 4, "accuracy": 0.75, "confusion": [[1, 1], [0, 2]]}, "b": {"n": 2, "accuracy": 1.0}})
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "a", "b"]
    assert lines[2].split() == ["accuracy", "0.7500", "1.0000"]
    assert "[[1, 1], [0, 2]]" in lines[-1]


def test_train_then_evaluate_through_the_cli(toy_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.safetensors"
    args = [
        "train",
        "--data",
        str(toy_dataset),
        "--arch",
        "tiny",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--batch-size",
        "8",
        "--lipschitz",
        "5",
        "--blur-fraction",
        "0.4",
        "--blur-sigma",
        "3",
        "5",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "val" in printed and "test" in printed and "accuracy" in printed
    meta = read_sidecar(out)
    assert meta["training"]["lipschitz"] == 5.0 and meta["training"]["blur_sigma"] == [3.0, 5.0]
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(toy_dataset), "--model", str(out), "--json", str(report)]) == 0
    assert "AUROC" in capsys.readouterr().out
    result = json.loads(report.read_text())
    row = result["models"]["tiny"]["metrics"]
    assert result["split"] == "test" and row["n"] == 48
    for key in ("accuracy", "auroc", "confusion", "fake_recall", "real_precision"):
        assert row[key] == meta["metrics"]["test"][key]
    assert row["input_grad_norm"] == pytest.approx(meta["metrics"]["test"]["input_grad_norm"], rel=1e-5)


def test_cli_errors_are_one_line(toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "none"), "--arch", "tiny", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    small = make_toy_dataset(tmp_path / "small", n_per_class_split=2, size=16)
    assert main(["evaluate", "--data", str(small), "--model", str(toy_model)]) == 2
    assert "trained on 32x32" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_dataset),
                "--arch",
                "resnet18",
                "--resume-from",
                str(toy_model),
                "--out",
                str(tmp_path / "r.safetensors"),
            ]
        )
        == 2
    )
    assert "is a tiny model" in capsys.readouterr().err
    bad_init = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(2)}, bad_init)
    assert (
        main(["train", "--data", str(toy_dataset), "--arch", "tiny", "--init", str(bad_init), "--out", str(tmp_path / "i.safetensors")])
        == 2
    )
    assert "does not fit tiny" in capsys.readouterr().err
