"""The paper's seven detectors: VGG-16, ResNet-18, four Lipschitz-regularised ResNets, the blur ResNet."""

from __future__ import annotations

from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.roles import Role, register_roles

VGG = "vgg16"
RESNET = "resnet18"
BLUR = "resnet18-blur"


def lip_name(lam: float) -> str:
    """Model name of the ResNet-18 regularised with ``lam`` (``resnet18-lip50``)."""
    return f"{RESNET}-lip{lam:g}"


@register_roles(order=0)
def paper_roles(cfg: dict[str, Any]) -> list[Role]:
    """The paper's detectors; blackbox images come from the other architecture, as in the paper."""
    if cfg["run"].get("detectors"):
        return []  # the user's detectors replace the trained ones
    t = cfg["train"]
    roles = [
        Role(VGG, VGG, "paper", "VGG-16", transfer_from=RESNET, paper_row=VGG, order=0),
        Role(RESNET, RESNET, "paper", "ResNet-18", transfer_from=VGG, paper_row=RESNET, sample_source=True, order=1),
    ]
    lip = t["lipschitz"]
    if lip["start"] not in (RESNET, "scratch"):
        raise DfrobustError(f"train.lipschitz.start must be {RESNET!r} (fine-tune the plain ResNet) or 'scratch', got {lip['start']!r}")
    start = RESNET if lip["start"] == RESNET else None
    for lam in lip["lambdas"]:
        roles.append(
            Role(
                lip_name(lam),
                RESNET,
                "lipschitz",
                f"ResNet-18, Lipschitz lambda {lam:g}",
                start_from=start,
                recipe={"lipschitz": float(lam), "epochs": int(lip["epochs"])},
                transfer_from=VGG,
                paper_row=lip_name(lam),
                average_group=f"{RESNET}-lip",
                order=2,
            )
        )
    blur = t["blur"]
    roles.append(
        Role(
            BLUR,
            RESNET,
            "blur",
            "ResNet-18, blur augmentation",
            start_from=RESNET,
            recipe={"epochs": int(blur["epochs"]), "blur_fraction": float(blur["fraction"]), "blur_sigma": tuple(blur["sigma"])},
            transfer_from=VGG,
            paper_row=BLUR,
            purifier_classifier=True,
            order=3,
        )
    )
    return roles
