"""``stop_margin`` (APGD, PGD): images fooled for good stop being attacked, the model calls drop, success does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.attacks.base import logit_margin, make_attack
from dfrobust.attacks.early_stop import fooled_for_good
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from dfrobust.utils.io import quantize


class Counting(nn.Module):
    """Counts the images that go through ``inner`` with a gradient (attack steps) and without (checks)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.graded, self.plain = inner, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            self.graded += len(x)
        else:
            self.plain += len(x)
        return self.inner(x)


class Linear(nn.Module):
    """Logit ``s = w . (x - c)`` for real, ``-s`` for fake; ``c`` is the 8-bit grey 128/255."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 48).view(1, 3, 4, 4) + 0.1)
        self.c = torch.tensor(128.0) / 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = ((x - self.c) * self.w).flatten(1).sum(1)
        return torch.stack([-s, s], dim=1)


@pytest.fixture(scope="module")
def toy_fakes(toy_dataset: Path, toy_model: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_detector(toy_model)
    fakes = load_split(toy_dataset, "test", classes=["fake"], limit=16, seed=0)
    return model.eval(), fakes.images(), fakes.y


def _stored_success(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(quantize(x_adv)).argmax(1) != y


def test_an_image_fooled_in_floats_but_not_as_stored_is_not_frozen() -> None:
    model = Linear()
    x0 = quantize(torch.full((1, 3, 4, 4), 0.5))  # 128/255: s = 0 exactly, and argmax picks fake (0)
    y = torch.tensor([0])
    x_adv = x0 + 0.001 * model.w.detach().sign()  # a fifth of a grey level: s > 0 in floats, rounds back to x0
    logits = model(x_adv).detach()
    assert logit_margin(logits, y).item() > 0 and torch.equal(quantize(x_adv), x0)
    assert not fooled_for_good(model, x_adv, y, logits, 0.0).any()
    far = x0 + 4 / 255 * model.w.detach().sign()
    assert fooled_for_good(model, far, y, model(far).detach(), 0.0).all()
    assert not fooled_for_good(model, far, y, model(far).detach(), 1e6).any()  # below the margin asked for


@pytest.mark.parametrize("name", ["pgd", "apgd"])
def test_fooled_images_stop_and_the_calls_drop_without_losing_success(
    name: str, toy_fakes: tuple[nn.Module, torch.Tensor, torch.Tensor]
) -> None:
    model, x, y = toy_fakes
    counted = Counting(model)
    kw = {"eps": 0.06, "steps": 20}
    full = make_attack(name, **kw)(counted, x, y)
    full_graded = counted.graded
    counted.graded = counted.plain = 0
    stop = make_attack(name, **kw, stop_margin=0.0)(counted, x, y)
    assert stop.settings["stop_margin"] == 0.0 and "stop_margin" not in full.settings
    steps_run = stop.extras["grad_steps"]
    assert (full.extras["grad_steps"] == kw["steps"] + (name == "apgd")).all()  # APGD also evaluates its start
    frozen = steps_run < full.extras["grad_steps"]
    assert frozen.sum() >= len(x) // 2, "the easy problem should stop most images early"
    # images through the model with a gradient: on this toy, 480 -> 293 (PGD) and 504 -> 235 (APGD) over 24 fakes
    assert counted.graded == int(steps_run.sum()) < 0.75 * full_graded
    assert counted.plain < full_graded - counted.graded  # the 8-bit checks cost less than the backward passes saved
    # success on the stored (8-bit) images is not lower, and every frozen image is fooled as stored
    assert _stored_success(model, stop.x_adv, y).sum() >= _stored_success(model, full.x_adv, y).sum()
    assert _stored_success(model, stop.x_adv[frozen], y[frozen]).all()
    assert stop.success.sum() >= full.success.sum()
    assert (stop.linf <= kw["eps"] + 1e-6).all()


@pytest.mark.parametrize(("name", "extra", "short_steps", "long_steps"), [
    ("pgd", {"step_size": 0.003, "random_start": False}, 3, 12),  # a fixed step: the long run's first 3 steps are the short one's
    ("apgd", {}, 4, 9),  # up to 9 steps APGD's checkpoints come every step: the same schedule
])  # fmt: skip
def test_a_frozen_image_is_not_updated_by_later_steps(name: str, extra: dict, short_steps: int, long_steps: int) -> None:
    model = Linear()
    gen = torch.Generator().manual_seed(0)
    t = torch.linspace(-0.003, 0.02, 12).view(-1, 1, 1, 1)  # the last ones are out of reach at eps 0.01
    x = (0.5 + t * model.w.detach().sign() + 0.002 * torch.rand(12, 3, 4, 4, generator=gen)).clamp(0, 1)
    y = torch.ones(12, dtype=torch.long)  # real: the images with t > 0 are correct, the closest flip in a few steps
    short = make_attack(name, eps=0.01, steps=short_steps, stop_margin=0.1, **extra)(model, x, y)
    long = make_attack(name, eps=0.01, steps=long_steps, stop_margin=0.1, **extra)(model, x, y)
    start = int(name == "apgd")  # APGD evaluates its start before its first step
    frozen = short.extras["grad_steps"] < short_steps + start  # stopped within the short run
    assert frozen.any() and (long.extras["grad_steps"] == long_steps + start).any()
    assert torch.equal(long.x_adv[frozen], short.x_adv[frozen])  # the longer run did not move them
    assert torch.equal(long.extras["grad_steps"][frozen], short.extras["grad_steps"][frozen])
    assert (logit_margin(model(long.x_adv).detach()[frozen], y[frozen]) > 0.1).all()


def test_stop_margin_is_checked_like_every_parameter() -> None:
    from dfrobust.attacks.base import check_attack_params
    from dfrobust.config import study_config
    from dfrobust.config_checks import validate_study_config
    from dfrobust.attacks.base import attack_param_checks, attack_section_defaults

    for name in ("apgd", "pgd"):
        with pytest.raises(DfrobustError, match=r"stop_margin \(--stop-margin\) = -1"):
            make_attack(name, stop_margin=-1)
        assert check_attack_params(name, {"stop_margin": 0.5}) == {"stop_margin": 0.5}
    cfg = study_config("tiny", ["attack.apgd.stop_margin=2.0"], attack_section_defaults)
    assert cfg["attack"]["apgd"]["stop_margin"] == 2.0
    validate_study_config(cfg, attack_param_checks())
    bad = study_config("tiny", ["attack.pgd.stop_margin=-2.0"], attack_section_defaults)
    with pytest.raises(DfrobustError, match="stop_margin"):
        validate_study_config(bad, attack_param_checks())
