"""The detector families people deploy, by name, with the input size and normalisation they were trained with.

A card with ``source = "deployed:NAME"`` needs no other key: the family supplies ``input_size``,
``normalization``, ``output`` and ``fake_index`` (a key the card sets wins). The network comes
from timm (the ``timm`` or ``pretrained`` extra) or torchvision, with random weights unless the
card names a ``weights`` file; nothing is downloaded.

- ``xception``: DeepfakeBench's Xception (timm's ``legacy_xception``), 256 px, mean = std = 0.5,
  2 logits with DeepfakeBench's labels (real = 0, fake = 1).
- ``efficientnet_b4``: DeepfakeBench's EfficientNet-B4 (timm's ``tf_efficientnet_b4``: TensorFlow
  padding, as the lukemelas port DeepfakeBench uses), 256 px, mean = std = 0.5, 2 logits, fake = 1.
- ``resnet50_cnndetection``: CNNDetection's ResNet-50 (Wang et al. 2020; torchvision's ``resnet50``),
  224 px, ImageNet normalisation, one logit whose sigmoid is P(fake).

Weights files: a timm/torchvision state dict of the same network, a training checkpoint wrapping
one (``{"model": ...}``, ``{"state_dict": ...}``), or a DeepfakeBench checkpoint: its ``backbone.``
prefix is dropped, Xception's ``last_linear`` becomes timm's ``fc``, and EfficientNet in the
lukemelas layout (``_blocks.*``) is mapped onto timm's by position with every shape checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dfrobust.errors import DfrobustError

INCEPTION = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class Family:
    """One deployed detector family: where its network comes from and how it reads pixels."""

    library: str  # "timm" or "torchvision"
    arch: str
    input_size: tuple[int, int]
    normalization: Any  # a card's normalization value
    output: str
    fake_index: int
    origin: str


FAMILIES: dict[str, Family] = {
    "xception": Family("timm", "legacy_xception", (256, 256), {"mean": INCEPTION, "std": INCEPTION}, "logits", 1, "DeepfakeBench"),
    "efficientnet_b4": Family(
        "timm", "tf_efficientnet_b4", (256, 256), {"mean": INCEPTION, "std": INCEPTION}, "logits", 1, "DeepfakeBench"
    ),
    "resnet50_cnndetection": Family("torchvision", "resnet50", (224, 224), "imagenet", "logit", 1, "CNNDetection (Wang et al. 2020)"),
}


def family(name: str) -> Family:
    """The family called ``name``; one-line error listing the known ones."""
    if name not in FAMILIES:
        raise DfrobustError(f"unknown deployed detector {name!r}; use one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def card_defaults(name: str) -> dict[str, Any]:
    """The card keys a ``deployed:NAME`` source supplies (a key the card sets wins)."""
    f = family(name)
    return {"input_size": list(f.input_size), "normalization": f.normalization, "output": f.output, "fake_index": f.fake_index}


def build_family(name: str, num_outputs: int) -> nn.Module:
    """The family's network with ``num_outputs`` outputs and random weights (one-line error when timm is missing)."""
    f = family(name)
    if f.library == "torchvision":
        import torchvision

        return torchvision.models.get_model(f.arch, weights=None, num_classes=num_outputs)
    try:
        import timm
    except ImportError as exc:
        raise DfrobustError(f"deployed:{name} is built by timm; pip install 'dfrobust[timm]'") from exc
    return timm.create_model(f.arch, pretrained=False, num_classes=num_outputs)


def adapt_state(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """A DeepfakeBench checkpoint's keys in ``model``'s names; any other state dict is returned as is."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    if any(k in own for k in tensors):
        return state  # already the model's names
    if tensors and all(k.startswith("backbone.") for k in tensors):
        tensors = {k[len("backbone.") :]: v for k, v in tensors.items()}
        tensors = {(("fc." + k[len("last_linear.") :]) if k.startswith("last_linear.") else k): v for k, v in tensors.items()}
    if any(k in own for k in tensors):
        return tensors
    if any("_blocks." in k for k in tensors) and len(tensors) == len(own):
        from dfrobust.models.efficientnet_lite import map_wheel_keys

        return map_wheel_keys(model, tensors)  # lukemelas layout: same order, other names; shapes checked
    return state
