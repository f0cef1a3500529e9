"""`init = "imagenet"`: torchvision's published weights from the torch hub cache, tested offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.hub
import torchvision

from conftest import make_toy_dataset
from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import read_sidecar
from dfrobust.models.detectors import build_detector, imagenet_weights_file


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder; any download attempt fails as it would offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def _place_resnet18(hub: Path) -> dict[str, torch.Tensor]:
    """A generated state dict with ImageNet resnet18's keys and shapes, under torchvision's file name."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    path = hub / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_imagenet_init_loads_the_cached_file_without_network(hub: Path) -> None:
    state = _place_resnet18(hub)
    assert imagenet_weights_file("resnet18") == hub / "checkpoints" / "resnet18-f37072fd.pth"
    model = build_detector("resnet18", init="imagenet")
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.backbone.fc.out_features == 2  # head replaced after loading


def test_missing_weights_offline_name_the_file_and_folder(hub: Path) -> None:
    with pytest.raises(DfrobustError, match=r"put resnet18-f37072fd\.pth in .*hub/checkpoints") as info:
        build_detector("resnet18", init="imagenet")
    assert "\n" not in str(info.value)
    with pytest.raises(DfrobustError, match="no ImageNet weights for tiny"):
        build_detector("tiny", init="imagenet")


def test_train_cli_accepts_init_imagenet(hub: Path, tmp_path: Path) -> None:
    _place_resnet18(hub)
    data = make_toy_dataset(tmp_path / "data", n_per_class_split=4, size=32)
    out = tmp_path / "r18.safetensors"
    assert main(["train", "--data", str(data), "--arch", "resnet18", "--init", "imagenet", "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    assert read_sidecar(out)["sources"]["init"] == {"path": "imagenet"}
