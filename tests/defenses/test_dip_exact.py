"""Exact DIP gradients: the checkpointed backward is the full second-order graph's, and finite differences agree."""

from __future__ import annotations

import pytest
import torch

from dfrobust.defenses.dip import DipConfig, dip_purify
from dfrobust.defenses.dip_exact import _Fit, dip_exact
from dfrobust.defenses.dip_net import crop_back
from dfrobust.errors import DfrobustError

#: A two-level DIP small enough for float64 finite differences at 8 px.
TINY = DipConfig(iterations=8, input_channels=4, channels_down=(4, 4), channels_up=(4, 4), channels_skip=(0, 2), dtype="float64")
AT, SEEDS = 6, [3, 4]


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64), torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)


def _grad(x: torch.Tensor, w: torch.Tensor, segment: int | None) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad((dip_exact(xr, SEEDS, TINY, AT, segment=segment) * w).sum(), xr)
    return g


def test_value_is_the_purifiers_output(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, _ = images
    out = dip_exact(x, SEEDS, TINY, AT)
    for b, seed in enumerate(SEEDS):
        assert torch.allclose(out[b], dip_purify(x[b : b + 1], TINY, seed=seed, iteration=AT)[0], atol=1e-12)


@pytest.mark.parametrize("side", [8, 6])  # 6 px is reflection-padded to 8 for the two levels and cropped back
def test_segments_give_the_full_graphs_gradient(images: tuple[torch.Tensor, torch.Tensor], side: int) -> None:
    x, w = (t[..., :side, :side].contiguous() for t in images)
    # the reference: every step's second-order graph kept at once (what the segments avoid)
    xr = x.clone().requires_grad_()
    fit = _Fit(xr, SEEDS, TINY)
    target = fit.target(xr)
    state = fit.start().leaves()  # the initial network is a constant; leaves only so the first step has a graph
    for _ in range(AT - 1):
        state = fit.step(state, target, create_graph=True)
    (full,) = torch.autograd.grad((crop_back(fit.output(state.theta), fit.run.pads) * w).sum(), xr)
    assert full.abs().max() > 1e-3  # the fit carries x to the output: a gradient that is not zero
    for segment in (1, 2, 5, None):  # 2 leaves a short last segment (5 steps)
        assert torch.allclose(_grad(x, w, segment), full, rtol=1e-9, atol=1e-12)


def test_gradient_matches_central_finite_differences(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, w = images
    g = _grad(x, w, 2)
    gen = torch.Generator().manual_seed(1)
    h = 1e-7  # Adam's normalised steps make the map curved: the differences converge as O(h^2) below 1e-5
    for _ in range(3):
        d = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        f_plus = float((dip_exact(x + h * d, SEEDS, TINY, AT) * w).sum())
        f_minus = float((dip_exact(x - h * d, SEEDS, TINY, AT) * w).sum())
        fd = (f_plus - f_minus) / (2 * h)
        assert abs(fd - float((g * d).sum())) <= 1e-4 * max(abs(fd), 1e-3)


def test_bad_arguments_fail_before_work() -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(DfrobustError, match="one DIP seed per image"):
        dip_exact(x, [0], TINY, AT)
    with pytest.raises(DfrobustError, match="segment"):
        dip_exact(x, SEEDS, TINY, AT, segment=0)
