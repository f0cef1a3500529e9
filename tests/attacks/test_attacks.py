"""Tests of the attack API: FGSM, PGD and CW-L2 on small models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.attacks.base import AttackResult, available_attacks, logit_margin, make_attack
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from conftest import Linear


def _linear_model(size: int = 8, seed: int = 0) -> Linear:
    gen = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(2, 3 * size * size, generator=gen) * 0.1, torch.zeros(2))


def _batch(n: int = 6, size: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen), torch.randint(0, 2, (n,), generator=gen)


@pytest.fixture(scope="module")
def toy_fakes(toy_dataset: Path, toy_model: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_detector(toy_model)
    fakes = load_split(toy_dataset, "test", classes=["fake"], limit=12, seed=0)
    return model, fakes.images(), fakes.y


def test_registry_lists_attacks_and_rejects_unknown_parameters() -> None:
    assert {"fgsm", "cw", "pgd"} <= set(available_attacks())
    with pytest.raises(DfrobustError, match="no parameter"):
        make_attack("fgsm", kappa=3)
    with pytest.raises(DfrobustError, match="unknown attack"):
        make_attack("deepfool")
    cw = make_attack("cw").settings
    assert cw == {
        "attack": "cw", "kappa": 200.0, "c_range": [100.0, 10000.0], "search_steps": 5,
        "max_steps": 1000, "lr": 0.01, "abort_early": True, "unreached": "min-l2",
    }  # fmt: skip
    json.dumps(make_attack("pgd", norm="l2").settings)


def test_fgsm_equals_closed_form_on_linear_model() -> None:
    model = _linear_model()
    x, y = _batch()
    eps = 0.05
    result = make_attack("fgsm", eps=eps)(model, x, y)
    # d CE / d x = W^T (softmax(Wx + b) - onehot(y)) for a linear model
    w, b = model.lin.weight.detach(), model.lin.bias.detach()
    probs = (x.flatten(1) @ w.T + b).softmax(1)
    grad = (probs - nn.functional.one_hot(y, 2).float()) @ w
    expected = (x + eps * grad.sign().view_as(x)).clamp(0, 1)
    assert isinstance(result, AttackResult)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    assert torch.allclose(result.linf, (expected - x).flatten(1).abs().amax(1), atol=1e-6)
    assert torch.allclose(result.l2, (expected - x).flatten(1).norm(dim=1), atol=1e-5)
    assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    assert result.settings == {"attack": "fgsm", "eps": eps}


def test_attack_leaves_model_state_alone() -> None:
    model = _linear_model().train()
    x, y = _batch()
    make_attack("pgd", steps=2)(model, x, y)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("norm,eps", [("linf", 0.03), ("l2", 0.5)])
def test_pgd_stays_in_its_ball_and_is_seeded(norm: str, eps: float) -> None:
    model = _linear_model()
    x, y = _batch()
    x[0] = 0.0  # corners of the box: the projection must also keep pixels in [0, 1]
    x[1] = 1.0
    result = make_attack("pgd", norm=norm, eps=eps, steps=5, seed=3)(model, x, y)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    delta = (result.x_adv - x).flatten(1)
    bound = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (bound <= eps + 1e-5).all(), bound
    assert (bound > 0.5 * eps).all()  # it moved
    again = make_attack("pgd", norm=norm, eps=eps, steps=5, seed=3)(model, x, y)
    assert torch.equal(result.x_adv, again.x_adv)
    # the random start depends on the seed (a tiny step keeps it visible)
    starts = [make_attack("pgd", norm=norm, eps=eps, steps=1, step_size=1e-4, seed=s)(model, x, y).x_adv for s in (3, 4)]
    assert not torch.allclose(starts[0], starts[1])


def test_pgd_beats_fgsm_budget_on_toy_model(toy_fakes: tuple) -> None:
    model, x, y = toy_fakes
    result = make_attack("pgd", eps=0.1, steps=10)(model, x, y)
    assert result.success.float().mean() >= 0.9
    assert (model(result.x_adv).argmax(1) != y).eq(result.success).all()


def test_cw_fools_small_model_with_kappa_margin(toy_fakes: tuple) -> None:
    model, x, y = toy_fakes
    kappa, c_range = 2.0, (1.0, 100.0)
    attack = make_attack("cw", kappa=kappa, c_range=c_range, search_steps=3, max_steps=100, lr=0.05)
    result = attack(model, x, y)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    with torch.no_grad():
        logits = model(result.x_adv)
    accuracy = (logits.argmax(1) == y).float().mean().item()
    assert accuracy < 0.1, accuracy
    margin = logit_margin(logits, y)
    ok = result.success
    assert result.extras["kappa_reached"][ok].all()
    assert (margin[ok] >= kappa - 1e-3).all(), margin
    assert torch.allclose(result.extras["margin"], margin, atol=1e-4)
    tried = result.extras["c_tried"]
    tried = tried[~tried.isnan()]
    assert len(tried) >= len(x) and (tried >= c_range[0]).all() and (tried <= c_range[1]).all()
    assert ((result.extras["c"][ok] >= c_range[0]) & (result.extras["c"][ok] <= c_range[1])).all()
    assert (result.l2[ok] > 0).all()  # a success is never the clean image


def test_cw_search_keeps_the_lowest_l2_success(toy_fakes: tuple) -> None:
    model, x, y = toy_fakes
    kw = dict(kappa=2.0, max_steps=100, lr=0.05)
    search = make_attack("cw", c_range=(0.1, 100.0), search_steps=4, **kw)(model, x, y)
    assert search.extras["kappa_reached"].all()
    assert (search.extras["c_tried"].isfinite().sum(1) >= 3).all()  # the search moved c
    # a shorter search is a prefix of the longer one (c = 0.1 fails, 1 succeeds): the longer keeps
    # the lowest L2 over all its steps, so it is never worse and the extra steps (lower c) help
    short = make_attack("cw", c_range=(0.1, 100.0), search_steps=2, **kw)(model, x, y)
    assert short.extras["kappa_reached"].all()
    assert (search.l2 <= short.l2 + 1e-5).all() and (search.l2 < short.l2 - 1e-3).any()
    # and a plain run at the largest c reaches kappa with larger perturbations than the search
    plain = make_attack("cw", c_range=(100.0, 100.0), search_steps=1, **kw)(model, x, y)
    assert plain.extras["kappa_reached"].all()
    assert (search.l2 <= plain.l2).all(), (search.l2, plain.l2)


def test_cw_unreached_kappa_returns_lowest_l2_or_highest_margin(toy_fakes: tuple) -> None:
    model, x, y = toy_fakes
    kw = dict(kappa=1e4, c_range=(1.0, 100.0), search_steps=2, max_steps=60, lr=0.05)  # kappa out of reach
    low = make_attack("cw", **kw)(model, x, y)
    high = make_attack("cw", unreached="max-margin", **kw)(model, x, y)
    assert not low.extras["kappa_reached"].any() and not high.extras["kappa_reached"].any()
    both = low.success & high.success
    assert both.sum() >= len(x) // 2
    # same trajectories, another pick: the confident image is farther away, the closest one is less confident
    assert (high.extras["margin"][both] >= low.extras["margin"][both] - 1e-4).all()
    assert (high.l2[both] >= low.l2[both] - 1e-5).all()
    assert (high.extras["margin"] > low.extras["margin"] + 1e-3).any()
    with pytest.raises(DfrobustError, match="unreached"):
        make_attack("cw", unreached="clean")


def test_cw_flags_failures_and_raises_c_tenfold_within_range() -> None:
    # a model that always says class 0, whatever the input: attacking class-0 images must fail
    model = Linear(torch.zeros(2, 3 * 8 * 8), torch.tensor([5.0, 0.0]))
    x, _ = _batch(n=4)
    y = torch.zeros(4, dtype=torch.long)
    result = make_attack("cw", kappa=1.0, c_range=(1.0, 100.0), search_steps=5, max_steps=20)(model, x, y)
    assert not result.success.any()
    assert not result.extras["kappa_reached"].any()
    expected = torch.tensor([1.0, 10.0, 100.0]).expand(4, 3)
    assert torch.equal(result.extras["c_tried"][:, :3], expected)
    assert result.extras["c_tried"][:, 3:].isnan().all()  # converged at the top of the range, not beyond
    assert torch.equal(result.extras["c_lo"], torch.full((4,), 100.0))
    assert result.extras["c_hi"].isnan().all()


def test_cw_binary_search_follows_carlini_rule() -> None:
    # Z_0 = 0.5, Z_1 = mean(x): from x = 0.2 the margin reaches 0 when every pixel rises by 0.3;
    # the optimum c / (2 D) per pixel gets there once c > 0.6 D = 115.2 (D = 192)
    size = 8
    weight = torch.zeros(2, 3 * size * size)
    weight[1] = 1.0 / (3 * size * size)
    model = Linear(weight, torch.tensor([0.5, 0.0]))
    x = torch.full((2, 3, size, size), 0.2)
    y = torch.zeros(2, dtype=torch.long)
    result = make_attack("cw", kappa=0.0, c_range=(3.0, 1000.0), search_steps=5, max_steps=300)(model, x, y)
    # fail at 3 and 30 (x10 while no upper bound), success at 300; bisect: success at 165, fail at 97.5
    expected = torch.tensor([3.0, 30.0, 300.0, 165.0, 97.5])
    assert torch.equal(result.extras["c_tried"], expected.expand(2, 5))
    assert torch.equal(result.extras["c_lo"], torch.full((2,), 97.5))
    assert torch.equal(result.extras["c_hi"], torch.full((2,), 165.0))
    assert result.success.all() and result.extras["kappa_reached"].all()
    assert (result.x_adv.mean((1, 2, 3)) >= 0.5 - 1e-4).all()
    # the kept image is (close to) the smallest success: every pixel up by 0.3, L2 = 0.3 * sqrt(192)
    assert (result.l2 <= 0.3 * 192**0.5 * 1.01).all(), result.l2
    assert set(result.extras["c"].tolist()) <= {300.0, 165.0}


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--attack", "pgd", "--steps", "0"], "pgd: steps (--steps) = 0 needs a whole number >= 1"),
        (["--attack", "cw", "--kappa", "-1"], "cw: kappa (--kappa) = -1.0 needs a finite number in [0, inf)"),
        (["--attack", "fgsm", "--eps", "8"], "fgsm: eps (--eps) = 8.0 is more than 1"),
    ],
)
def test_a_bad_parameter_flag_is_the_constructor_s_one_line_error_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    """``dfrobust attack``'s parameter flags are checked by the attack's declared constraints, first."""
    from dfrobust.cli import main

    out = tmp_path / "out"
    argv = ["attack", "--data", str(tmp_path / "no-data"), "--source", str(tmp_path / "none.safetensors"), "--out", str(out)]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err
    assert says in err and "no-data" not in err and not out.exists()
    with pytest.raises(DfrobustError, match=re.escape(says)):
        make_attack(flags[1], **{flags[2][2:]: {"0": 0, "-1": -1.0, "8": 8.0}[flags[3]]})


def test_an_attack_through_a_wrapper_leaves_the_wrapped_detector_in_eval_mode() -> None:
    from dfrobust.models.detectors import build_detector

    class Wrapper(nn.Module):  # a new Module starts in train mode, as the adaptive stage's PurifiedModel did
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    torch.manual_seed(0)
    detector = build_detector("resnet18").eval()
    wrapper = Wrapper(detector)
    assert wrapper.training and not detector.training
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 0])
    make_attack("fgsm", eps=0.02)(wrapper, x, y)
    assert wrapper.training  # each module gets its own mode back
    assert not any(m.training for m in detector.modules())  # BatchNorm still uses its running statistics
    with torch.no_grad():
        detector(x[:1])  # one image: in train mode BatchNorm raises here
