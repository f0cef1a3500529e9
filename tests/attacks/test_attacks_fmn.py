"""Tests of FMN (fast minimum-norm): exact minimal norms of a linear model, and the toy detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfrobust.attacks.base import logit_margin, make_attack
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from dfrobust.utils.io import quantize
from conftest import Linear


def _linear_case(n: int = 6, size: int = 8) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    d = 3 * size * size
    model = Linear(torch.randn(2, d, generator=gen) * 0.1, torch.zeros(2))
    # images in the middle of the box, so the nearest boundary point lies inside [0, 1]
    x = 0.4 + 0.2 * torch.rand(n, 3, size, size, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fmn_finds_the_exact_minimal_norm_of_a_linear_model(norm: str) -> None:
    model, x, y = _linear_case()
    # For logits W x + b the margin is linear: |margin| / ||w_other - w_y||_dual is the exact
    # minimal norm (L2: dual L2; Linf: dual L1), as long as that point lies inside the box.
    w = model.lin.weight.detach()
    diff = (w[1] - w[0]).abs()
    dual = diff.norm() if norm == "l2" else diff.sum()
    with torch.no_grad():
        exact = logit_margin(model(x), y).abs() / dual
    direction = (w[1] - w[0]) * torch.where(y == 0, 1.0, -1.0)[:, None]  # raises the other logit
    step = direction / direction.norm(dim=1, keepdim=True) if norm == "l2" else direction.sign()
    nearest = x.flatten(1) + exact[:, None] * step
    assert ((nearest >= 0) & (nearest <= 1)).all()  # the minimal points lie inside the box
    result = make_attack("fmn", norm=norm, steps=100, kappa=0.0)(model, x, y)
    assert result.success.all()
    found = result.l2 if norm == "l2" else result.linf
    assert (found >= exact * 0.999).all()  # no adversarial point can be closer than the exact one
    assert (found <= exact * 1.05).all()


def test_fmn_is_deterministic_and_reports_its_label_and_margin() -> None:
    model, x, y = _linear_case()
    a = make_attack("fmn", norm="linf", steps=30)
    r1, r2 = a(model, x, y), a(model, x, y)
    assert torch.equal(r1.x_adv, r2.x_adv)
    assert a.label == "fmn-linf"
    assert (r1.extras["margin"][r1.success] > 0).all()


def test_fmn_kappa_pushes_past_the_boundary() -> None:
    model, x, y = _linear_case()
    plain = make_attack("fmn", steps=60, kappa=0.0)(model, x, y)
    margin = make_attack("fmn", steps=60, kappa=0.05)(model, x, y)
    assert margin.success.all()
    assert (margin.extras["margin"] >= 0.05 * 0.999).all()
    assert (margin.l2 > plain.l2).all()


def test_fmn_rejects_bad_parameters() -> None:
    with pytest.raises(DfrobustError, match="norm"):
        make_attack("fmn", norm="l1")
    with pytest.raises(DfrobustError, match="steps"):
        make_attack("fmn", steps=0)
    with pytest.raises(DfrobustError, match="gamma"):
        make_attack("fmn", gamma_init=0.001, gamma_final=0.01)


def test_fmn_flips_every_toy_fake_no_further_than_bounded_pgd_needs(toy_dataset: Path, toy_model: Path) -> None:
    model, _ = load_detector(toy_model)
    fakes = load_split(toy_dataset, "test", classes=["fake"], limit=8, seed=0)
    x, y = fakes.images(), fakes.y
    fmn = make_attack("fmn", norm="l2", steps=60)(model, x, y)
    assert fmn.success.all()  # unbounded: every image flips
    with torch.no_grad():  # and stays flipped as an 8-bit PNG (the default kappa's purpose)
        assert (model(quantize(fmn.x_adv)).argmax(1) != y).all()
    # the smallest radius of a grid at which 20-step PGD-L2 flips each image
    radii = [0.05 * 1.5**k for k in range(14)]
    smallest = torch.full((len(x),), float("inf"))
    for r in reversed(radii):
        flipped = make_attack("pgd", norm="l2", eps=r, steps=20, random_start=False)(model, x, y).success
        smallest = torch.where(flipped, torch.full_like(smallest, r), smallest)
    assert torch.isfinite(smallest).all()
    assert fmn.l2.median() <= smallest.median()
    assert (fmn.l2 <= smallest * 1.05).float().mean() >= 0.75
