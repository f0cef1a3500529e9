"""`evaluate_detector` and the loaders take tensors (labels in either convention) and in-place folders; bad inputs are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dfrobust
from conftest import toy_image
from dfrobust.data.dataset import ImageSet
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.evaluation import evaluate_detector
from dfrobust.utils.io import save_png


class MeanScorer(nn.Module):
    """Logits (0, logit(t)) where t is the image's mean pixel: P(real) = t."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.mean(dim=(1, 2, 3)).clamp(1e-4, 1 - 1e-4)
        return torch.stack([torch.zeros_like(t), torch.log(t / (1 - t)) + self.dummy], 1)


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    levels = torch.tensor([0.1, 0.6, 0.7, 0.9])  # P(real) per image
    return levels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous(), torch.tensor([0, 0, 1, 1])  # fake = 0


def test_tensors_in_both_label_conventions_give_the_same_metrics() -> None:
    x, y = _tensors()
    ours = evaluate_detector(MeanScorer(), (x, y), gradients=False)
    assert ours["n"] == 4 and ours["accuracy"] == pytest.approx(0.75) and ours["auroc"] == pytest.approx(1.0)
    theirs = evaluate_detector(MeanScorer(), x, y=1 - y, labels="fake=1", gradients=False)
    assert theirs["accuracy"] == ours["accuracy"] and theirs["confusion"] == ours["confusion"]
    pixels = ImageSet((x * 255).round().to(torch.uint8), y, [str(i) for i in range(4)])
    assert evaluate_detector(MeanScorer(), pixels, gradients=False)["confusion"] == ours["confusion"]
    images, fingerprint = dfrobust.load_images((x, 1 - y), labels="fake=1")
    assert images.y.tolist() == y.tolist() and len(fingerprint) == 64
    fakes, _ = dfrobust.load_images(x, classes=["fake"], y=y)
    assert fakes.y.tolist() == [0, 0] and fakes.paths == ["tensor/00000", "tensor/00001"]


def test_an_in_place_folder_is_read_by_evaluate_load_split_and_load_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls, fake in (("0_real", False), ("1_fake", True)):
            for i in range(3):
                save_png(tmp_path / split / cls / f"{i}.png", toy_image(rng, 16, fake))
    test = dfrobust.load_split(tmp_path, "test")
    assert len(test) == 6 and sorted(test.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(dfrobust.load_images(tmp_path, None)[0]) == 12
    m = evaluate_detector(MeanScorer(), tmp_path, gradients=False)
    assert m["n"] == 6 and m["confusion"] == evaluate_detector(MeanScorer(), test, gradients=False)["confusion"]
    assert evaluate_detector(MeanScorer(), str(tmp_path), split=None, gradients=False)["n"] == 12


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - must never run
        raise AssertionError("scored before the input was checked")


@pytest.mark.parametrize(
    ("data", "kwargs", "match"),
    [
        (_tensors()[0] * 255, {"y": _tensors()[1]}, "divide by 255"),
        ((_tensors()[0] * 255).to(torch.uint8), {"y": _tensors()[1]}, "float"),
        (_tensors()[0][:, :1], {"y": _tensors()[1]}, "N x 3 x H x W"),
        (_tensors()[0], {}, "without labels"),
        (_tensors()[0], {"y": torch.tensor([0, 1])}, "shape"),
        (_tensors()[0], {"y": torch.tensor([0, 1, 2, 1])}, "besides 0 and 1"),
        (_tensors(), {"labels": "fake=real"}, "not a label convention"),
        (_tensors(), {"y": torch.tensor([0, 0, 1, 1])}, "given twice"),
        ("does/not/exist", {}, "does not exist"),
        ([1, 2, 3], {}, "got a list"),
    ],
)
def test_bad_inputs_are_one_line_errors_before_any_scoring(data: object, kwargs: dict, match: str) -> None:
    with pytest.raises(DfrobustError, match=match) as info:
        evaluate_detector(Boom(), data, **kwargs)
    assert "\n" not in str(info.value)


def test_folder_or_imageset_with_tensor_labels_is_refused(tmp_path: Path) -> None:
    x, y = _tensors()
    pixels = ImageSet((x * 255).round().to(torch.uint8), y, [str(i) for i in range(4)])
    with pytest.raises(DfrobustError, match="own labels"):
        evaluate_detector(Boom(), pixels, labels="fake=1")
    with pytest.raises(DfrobustError, match="tensors"):
        evaluate_detector(Boom(), tmp_path, y=y)
    with pytest.raises(DfrobustError, match="2 logits"):
        evaluate_detector(nn.Flatten(), (x, y), device="cpu", gradients=False)
    with pytest.raises(DfrobustError, match="without labels"):
        dfrobust.load_images(x)
    with pytest.raises(DfrobustError, match="got a dict"):
        dfrobust.load_images({"x": x})
