"""The adversarial-training recipe's guards against collapse: the radius ramp and the clean-loss mix."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.errors import DfrobustError
from dfrobust.train.adversarial import recipe_for
from dfrobust.train.config import TrainConfig


def _cfg(**kw: object) -> TrainConfig:
    return TrainConfig(arch="tiny", adversarial=kw.pop("adversarial", "pgd"), adv_eps=0.04, **kw)  # type: ignore[arg-type]


def test_radius_ramps_linearly_over_the_first_epochs() -> None:
    cfg = _cfg(adv_ramp_epochs=2.0)
    full = recipe_for(cfg, (32, 32))
    assert (full.eps, full.step_size) == (0.04, 0.01)  # no progress given: the full radius, step eps / 4
    quarter = recipe_for(cfg, (32, 32), epochs_done=0.5)  # 0.5 of 2 epochs: a quarter of the radius
    assert quarter.eps == pytest.approx(0.01) and quarter.step_size == pytest.approx(0.0025)
    assert quarter.radius == 0.04 and quarter.settings()["check"]["pgd_step_size"] == 0.01
    assert recipe_for(cfg, (32, 32), epochs_done=0.0).eps == 0.0
    assert recipe_for(cfg, (32, 32), epochs_done=2.5).eps == 0.04
    assert recipe_for(_cfg(adv_ramp_epochs=0.0), (32, 32), epochs_done=0.0).eps == 0.04  # no ramp


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def test_clean_weight_mixes_the_clean_and_adversarial_cross_entropy() -> None:
    torch.manual_seed(0)
    model = _Linear()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    recipe = recipe_for(_cfg(adversarial="fast", adv_clean_weight=0.25, adv_ramp_epochs=0.0), (8, 8))
    loss, logits, _ = recipe.loss(model, x, y, torch.Generator().manual_seed(3))
    x_adv = recipe.examples(model, x, y, torch.Generator().manual_seed(3))  # the same draws
    expected = 0.25 * F.cross_entropy(model(x), y) + 0.75 * F.cross_entropy(model(x_adv), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(logits, model(x_adv))
    pure = recipe_for(_cfg(adversarial="fast", adv_clean_weight=0.0, adv_ramp_epochs=0.0), (8, 8))
    loss0, _, _ = pure.loss(model, x, y, torch.Generator().manual_seed(3))
    assert loss0.item() == pytest.approx(F.cross_entropy(model(x_adv), y).item(), rel=1e-6)


def test_anti_collapse_settings_are_validated() -> None:
    with pytest.raises(DfrobustError, match="adv-clean-weight"):
        _cfg(adv_clean_weight=1.0)
    with pytest.raises(DfrobustError, match="adv-ramp-epochs"):
        _cfg(adv_ramp_epochs=-1.0)
    with pytest.raises(DfrobustError, match="only apply to adversarial"):
        TrainConfig(arch="tiny", adv_ramp_epochs=2.0)
    with pytest.raises(DfrobustError, match="TRADES has its own clean term"):
        _cfg(adversarial="trades", adv_clean_weight=0.2)
    assert recipe_for(_cfg(adversarial="trades"), (32, 32)).clean_weight == 0.0
