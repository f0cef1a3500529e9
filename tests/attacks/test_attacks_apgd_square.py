"""Tests of APGD, Square, MI-FGSM (with input diversity) and the logit ensemble, on tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.attacks.apgd import checkpoint_lengths, dlr_loss
from dfrobust.attacks.base import available_attacks, logit_margin, make_attack
from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.attacks.mifgsm import resize_and_pad
from dfrobust.attacks.square import margin_loss, p_schedule, square_pattern
from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector
from dfrobust.models.ensemble import LogitEnsemble
from dfrobust.utils.io import read_csv

TOL = 1e-6


class ChannelMeans(nn.Module):
    """Logits linear in the mean of each colour channel, all equal at grey: Square's windows can move it."""

    def __init__(self, n_classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(3, n_classes)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(n_classes, 3, generator=gen) * 20)
            self.lin.bias.copy_(-self.lin.weight.sum(1) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.mean(dim=(2, 3)))


def _images(n: int = 8, size: int = 16, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen)


def _near_boundary(model: nn.Module, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Textured images near grey, each with its own colour cast, labelled with the model's prediction.

    With :class:`ChannelMeans`, half of them (seed 1) are close to the boundary, half far from it.
    """
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 + (torch.rand(n, 3, 16, 16, generator=gen) - 0.5) * 0.5 + torch.randn(n, 3, 1, 1, generator=gen) * 0.03
    x = x.clamp(0, 1)
    with torch.no_grad():
        return x, model(x).argmax(1)


@pytest.fixture(scope="module")
def toy_fakes(toy_dataset: Path, toy_model: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_detector(toy_model)
    fakes = load_split(toy_dataset, "test", classes=["fake"], limit=12, seed=0)
    return model, fakes.images(), fakes.y


def _assert_in_ball(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float) -> None:
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + TOL).all(), (size.max().item(), eps)


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_builds_the_new_attacks_with_their_defaults() -> None:
    assert {"apgd", "square", "mifgsm"} <= set(available_attacks())
    assert make_attack("apgd", norm="l2", eps=0.5).settings == {
        "attack": "apgd", "eps": 0.5, "norm": "l2", "steps": 100, "restarts": 1, "loss": "ce",
        "rho": 0.75, "alpha": 0.75, "seed": 0,
    }  # fmt: skip
    assert make_attack("apgd").eps == 0.02 and make_attack("apgd", norm="l2").eps == 0.5
    assert make_attack("square").settings == {
        "attack": "square", "eps": 0.02, "norm": "linf", "queries": 5000, "p_init": 0.8, "seed": 0
    }  # fmt: skip
    assert make_attack("mifgsm").settings == {
        "attack": "mifgsm", "eps": 0.02, "steps": 10, "decay": 1.0, "di_prob": 0.0, "seed": 0
    }  # fmt: skip
    assert make_attack("apgd", loss="margin", norm="l2").label == "apgd-margin-l2"
    assert make_attack("square", norm="l2").label == "square-l2"
    assert make_attack("mifgsm", di_prob=0.5).label == "dimifgsm"
    # DI-MI-FGSM is its own name (a preset lists it beside MI-FGSM) with input diversity on by default
    assert make_attack("dimifgsm").settings["di_prob"] == 0.5 and make_attack("dimifgsm").label == "dimifgsm"
    # its old label is an alias: it builds the same attack, which reports its one name
    assert make_attack("di-mifgsm").settings == make_attack("dimifgsm").settings and make_attack("di-mifgsm").label == "dimifgsm"
    assert make_attack("dimifgsm", di_prob=0.0).label == "mifgsm"
    for name, bad in [("apgd", {"norm": "l1"}), ("apgd", {"loss": "kl"}), ("square", {"queries": 0}),
                      ("square", {"p_init": 0.0}), ("mifgsm", {"di_prob": 1.5}), ("mifgsm", {"steps": 0})]:  # fmt: skip
        with pytest.raises(DfrobustError):
            make_attack(name, **bad)


# ---------------------------------------------------------------------------------------------
# APGD


def test_apgd_checkpoint_schedule_matches_the_paper() -> None:
    # p_1 = 0.22, then windows shrink by 0.03 down to 0.06 of the budget
    assert checkpoint_lengths(100) == (22, 6, 3)
    assert checkpoint_lengths(5) == (1, 1, 1)


def test_apgd_beats_fgsm_and_stays_in_the_ball(toy_fakes: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = toy_fakes
    for eps in (0.04, 0.06):
        fgsm = make_attack("fgsm", eps=eps)(model, x, y)
        apgd = make_attack("apgd", eps=eps, steps=20)(model, x, y)
        assert apgd.success.sum() >= fgsm.success.sum()
        _assert_in_ball(apgd.x_adv, x, "linf", eps)
    assert apgd.success.all()  # at 0.06 the toy model falls (FGSM does not get there)
    assert torch.equal(apgd.success, apgd.extras["margin"] > 0)
    pgd = make_attack("pgd", norm="l2", eps=2.0)(model, x, y)
    apgd = make_attack("apgd", norm="l2", eps=2.0, steps=20)(model, x, y)
    assert apgd.success.sum() >= pgd.success.sum() and apgd.success.any()
    _assert_in_ball(apgd.x_adv, x, "l2", 2.0)


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ball_and_determinism_on_a_linear_model(norm: str, loss: str) -> None:
    model = ChannelMeans()
    x, y = _near_boundary(model)
    eps = 0.01 if norm == "linf" else 0.3
    attack = make_attack("apgd", norm=norm, eps=eps, steps=12, loss=loss, seed=3)
    a, b = attack(model, x, y), attack(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    _assert_in_ball(a.x_adv, x, norm, eps)
    assert 0 < a.success.sum() < len(x)  # some images are out of reach at this budget: both branches are used
    # a failed image comes back at its highest-loss point, not clean
    assert (a.l2[~a.success] > 0).all()


def test_apgd_more_restarts_only_add_successes() -> None:
    model = ChannelMeans()
    x, y = _near_boundary(model)
    one = make_attack("apgd", eps=0.01, steps=4, seed=1)(model, x, y)
    two = make_attack("apgd", eps=0.01, steps=4, restarts=3, seed=1)(model, x, y)
    assert 0 < one.success.sum() < len(x)
    assert (two.success | ~one.success).all()  # the first restart is the same run
    assert torch.equal(two.x_adv[one.success], one.x_adv[one.success])  # fooled images are not attacked again


def test_apgd_dlr_needs_three_classes() -> None:
    x, y = _near_boundary(ChannelMeans())
    with pytest.raises(DfrobustError, match=">= 3 classes.*--loss ce or --loss margin"):
        make_attack("apgd", loss="dlr", steps=2)(ChannelMeans(), x, y)
    three = ChannelMeans(n_classes=3)
    x, y = _near_boundary(three)
    with pytest.raises(DfrobustError, match="not 2 logits"):  # a detector has 2 logits; a 3-class model needs a card
        make_attack("apgd", loss="dlr", eps=0.05, steps=5)(three, x, y)
    x_adv, _ = make_attack("apgd", loss="dlr", eps=0.05, steps=5).perturb(three.eval(), x, y)  # the loss itself works
    _assert_in_ball(x_adv, x, "linf", 0.05)
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 5.0, 1.0]])
    # -(z_y - max other) / (z_1 - z_3): image 0 true 0 -> -(3-1)/3; image 1 true 0 -> -(0-5)/5
    assert torch.allclose(dlr_loss(logits, torch.tensor([0, 0])), torch.tensor([-2 / 3, 1.0]))


# ---------------------------------------------------------------------------------------------
# Square


def test_square_schedule_and_patterns() -> None:
    assert p_schedule(0, 10000, 0.8) == 0.8 and p_schedule(11, 10000, 0.8) == 0.4
    assert p_schedule(8001, 10000, 0.8) == 0.8 / 512
    # rescaled to the budget: iteration 250 of 5,000 is 500 of 10,000, the last with p_init / 8
    assert p_schedule(250, 5000, 0.8) == 0.8 / 8 and p_schedule(251, 5000, 0.8) == 0.8 / 16
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    assert torch.equal(margin_loss(logits, torch.tensor([0, 0])), -logit_margin(logits, torch.tensor([0, 0])))
    eta = square_pattern(5)
    assert eta.shape == (5, 5) and torch.isclose(eta.norm(), torch.tensor(1.0))
    assert (eta[:2] > 0).all() and (eta[2:] < 0).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_stays_in_the_ball_and_never_raises_the_margin(norm: str) -> None:
    model = ChannelMeans()
    x, y = _near_boundary(model)
    y[:2] = 1 - y[:2]  # two images misclassified from the start
    eps = 0.03 if norm == "linf" else 1.0
    budget = 60
    attack = make_attack("square", norm=norm, eps=eps, queries=budget, seed=2)
    history: dict[int, list[float]] = {i: [] for i in range(len(x))}
    queried_after_success: list[int] = []
    fooled_at: dict[int, int] = {}

    def watch(it: int, rows: torch.Tensor, margin: torch.Tensor, accepted: torch.Tensor) -> None:
        for r, m in zip(rows.tolist(), margin.tolist()):
            if r in fooled_at:
                queried_after_success.append(r)
            history[r].append(m)
            if m < 0:
                fooled_at[r] = it

    attack.on_step = watch
    result = attack(model, x, y)
    _assert_in_ball(result.x_adv, x, norm, eps)
    for margins in history.values():
        assert all(b <= a for a, b in zip(margins, margins[1:])), margins
    queries = result.extras["queries"]
    assert (queries <= budget).all() and (queries >= 1).all()
    assert (queries[:2] == 1).all() and torch.equal(result.x_adv[:2], x[:2])  # misclassified clean: one query, untouched
    assert result.success[:2].all()
    assert not queried_after_success
    assert 2 < result.success.sum() < len(x)  # the search fooled some images and ran out on others
    assert (queries[~result.success] == budget).all()
    assert torch.allclose(result.extras["margin"], logit_margin(model(result.x_adv), y), atol=1e-4)
    # the same seed gives the same images; the result does not depend on the callback
    attack.on_step = None
    again = attack(model, x, y)
    assert torch.equal(again.x_adv, result.x_adv) and torch.equal(again.extras["queries"], queries)


# ---------------------------------------------------------------------------------------------
# MI-FGSM and input diversity


def test_resize_and_pad_equals_interpolate_then_pad() -> None:
    x = _images(2, 16)
    sizes, tops, lefts = torch.tensor([14, 15]), torch.tensor([2, 0]), torch.tensor([0, 1])
    out = resize_and_pad(x, sizes, sizes, tops, lefts)
    for i in range(2):
        s, t, left = int(sizes[i]), int(tops[i]), int(lefts[i])
        small = nn.functional.interpolate(x[i : i + 1], size=[s, s], mode="bilinear", align_corners=False)
        ref = nn.functional.pad(small, [left, 16 - s - left, t, 16 - s - t])
        assert torch.allclose(out[i : i + 1], ref, atol=1e-5)


def test_mifgsm_beats_fgsm_and_di_is_seeded(toy_fakes: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = toy_fakes
    eps = 0.06
    fgsm = make_attack("fgsm", eps=eps)(model, x, y)
    mi = make_attack("mifgsm", eps=eps)(model, x, y)
    assert mi.success.sum() >= fgsm.success.sum() and mi.success.any()
    _assert_in_ball(mi.x_adv, x, "linf", eps)
    di = [make_attack("mifgsm", eps=eps, di_prob=0.5, seed=s)(model, x, y) for s in (0, 0, 1)]
    assert torch.equal(di[0].x_adv, di[1].x_adv)
    assert not torch.equal(di[0].x_adv, di[2].x_adv)
    assert not torch.equal(di[0].x_adv, mi.x_adv)
    _assert_in_ball(di[0].x_adv, x, "linf", eps)


# ---------------------------------------------------------------------------------------------
# ensemble


def test_logit_ensemble_averages_and_is_attackable(toy_model: Path) -> None:
    a, b = ChannelMeans(seed=0), ChannelMeans(seed=1)
    x = _images(4)
    ens = LogitEnsemble([a, b])
    assert torch.allclose(ens(x), (a(x) + b(x)) / 2)
    weighted = LogitEnsemble([a, b], weights=[3, 1])
    assert torch.allclose(weighted(x), 0.75 * a(x) + 0.25 * b(x))
    y = ens(x).argmax(1)
    result = make_attack("mifgsm", eps=0.05, steps=3)(ens, x, y)
    _assert_in_ball(result.x_adv, x, "linf", 0.05)
    assert all(p.requires_grad for p in ens.parameters())  # frozen only during the attack
    with pytest.raises(DfrobustError, match="weight"):
        LogitEnsemble([a, b], weights=[1.0])
    with pytest.raises(DfrobustError, match="different shapes"):
        LogitEnsemble([a, ChannelMeans(n_classes=3)])(x)
    loaded = LogitEnsemble.from_checkpoints([toy_model, toy_model])
    single, _ = load_detector(toy_model)
    x32 = _images(2, 32)
    assert torch.allclose(loaded(x32), single(x32), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the attack stage


@pytest.mark.parametrize(
    ("name", "params"),
    [("square", {"eps": 0.06, "queries": 10}), ("apgd", {"eps": 0.06, "steps": 5}), ("mifgsm", {"eps": 0.06, "di_prob": 0.5})],
)
def test_run_attack_runs_the_new_attacks(toy_dataset: Path, toy_model: Path, tmp_path: Path, name: str, params: dict) -> None:
    cfg = AttackConfig(name, params, batch_size=4, max_images=4, device="cpu")
    summary = run_attack(toy_dataset, toy_model, [], cfg, tmp_path / name)
    rows = read_csv(tmp_path / name / "results.csv")
    assert len(rows) == 4 and all(float(r["linf"]) <= 0.06 + 1 / 255 for r in rows)
    assert summary["attack"]["attack"] == name and summary["attack"]["seed"] == 0
