"""Robustness curves and the gradient-masking checks, on the toy detector and on models built to mask gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.studies.masking_checks import gradient_checks, monotone_check, weaker_beats_stronger
from dfrobust.studies.curves import chain_correct, robustness_curve, run_curves
from dfrobust.data.dataset import load_split
from dfrobust.models.checkpoint import load_detector
from dfrobust.utils.io import read_csv, read_json


class Rounded(nn.Module):
    """A detector behind a rounding step: the input gradient is zero everywhere (shattered gradients)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 8) / 8)


class Noisy(nn.Module):
    """A detector that adds fresh noise to its input on every call (a randomised defense)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + torch.randn_like(x) * 0.05)


@pytest.fixture(scope="module")
def toy_fakes(toy_dataset: Path, toy_model: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, _ = load_detector(toy_model)
    fakes = load_split(toy_dataset, "test", classes=["fake"], limit=10, seed=0)
    return model.eval(), fakes.images(), fakes.y


def test_curve_is_monotone_on_the_toy_model(toy_fakes: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = toy_fakes
    rows = robustness_curve(model, x, y, "linf", [0, 2 / 255, 8 / 255, 32 / 255], steps=10, batch_size=5)
    acc = [r["accuracy"] for r in rows]
    assert [r["eps"] for r in rows] == [0, 2 / 255, 8 / 255, 32 / 255] and all(r["n"] == 10 for r in rows)
    assert acc == sorted(acc, reverse=True) and acc[0] > acc[-1]
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in rows)
    assert monotone_check(rows)["warnings"] == []
    assert gradient_checks(model, x, y)["warnings"] == []


def test_checks_fire_on_a_gradient_masking_model(toy_fakes: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = toy_fakes
    masked = gradient_checks(Rounded(model), x, y)
    assert masked["zero_grad_share"] == 1.0 and masked["deterministic"]
    assert any("exactly zero" in w for w in masked["warnings"])
    torch.manual_seed(0)
    noisy = gradient_checks(Noisy(model), x, y)
    assert not noisy["deterministic"] and any("not deterministic" in w for w in noisy["warnings"])


def test_monotone_and_weaker_attack_checks_report_their_numbers() -> None:
    rows = [{"norm": "linf", "eps": e, "accuracy": a} for e, a in [(0, 0.9), (0.01, 0.4), (0.02, 0.6)]]
    res = monotone_check(rows)
    assert res["violations"] == [{"model": "", "norm": "linf", "subset": "", "eps_low": 0.01, "eps_high": 0.02,
                                  "accuracy_low": 0.4, "accuracy_high": 0.6}]  # fmt: skip
    assert len(res["warnings"]) == 1 and "40.0%" in res["warnings"][0]
    beaten = weaker_beats_stronger([True, True, False, True], [True, False, False, False], "linf eps 0.02")
    assert beaten["count"] == 2 and beaten["indices"] == [1, 3] and beaten["share"] == 0.5
    assert beaten["warnings"][0].startswith("linf eps 0.02: FGSM fooled 2 of 4")
    assert weaker_beats_stronger([False, True], [True, True])["warnings"] == []


def test_run_curves_writes_rows_checks_and_resumes(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves"
    norms = {"linf": [8 / 255], "l2": [0.5]}
    summary = run_curves(toy_dataset, toy_model, out, norms=norms, max_images=8, steps=3, batch_size=4, device="cpu")
    rows = read_csv(out / "curves.csv")
    assert list(rows[0])[:8] == ["model", "norm", "eps", "subset", "n", "accuracy", "ci_low", "ci_high"]
    # eps 0 starts each norm; rows for all images and per class
    assert {(r["norm"], float(r["eps"])) for r in rows} == {("linf", 0.0), ("linf", 8 / 255), ("l2", 0.0), ("l2", 0.5)}
    assert {r["subset"] for r in rows} == {"all", "fake", "real"}
    assert all(int(r["n"]) == 8 for r in rows if r["subset"] == "all")
    assert isinstance(summary["warnings"], list) and set(summary["checks"]) == {"gradients", "monotone", "fgsm_vs_apgd"}
    assert summary["checks"]["fgsm_vs_apgd"][0]["eps"] == 8 / 255
    assert read_json(out / "summary.json")["rows"] == summary["rows"]
    work = summary["work"]  # 2 radii > 0 over 8 images: at most 16 attacked, fewer when any was fooled or wrong clean
    assert work["all_images"] == 16 and work["attacked"] == sum(p["attacked"] for p in work["points"]) <= 16
    (out / "parts" / "part-00003.csv").unlink()  # the last unit (l2, second batch of 4): redone on the rerun
    (out / "summary.json").unlink()
    again = run_curves(toy_dataset, toy_model, out, norms=norms, max_images=8, steps=3, batch_size=4, device="cpu")
    assert again["rows"] == summary["rows"]


class Threshold(nn.Module):
    """Calls an image fake unless its mean pixel passes 128.3/255: a float nudge of 128/255 fools it, 8 bits undo that."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = (x.flatten(1).mean(1) > 128.3 / 255).float()
        return torch.stack([1 - real, real], dim=1)


def test_a_flip_that_8_bit_rounding_undoes_is_no_success(monkeypatch: pytest.MonkeyPatch) -> None:
    from dfrobust.attacks.base import AttackResult
    from dfrobust.studies import curves

    x = torch.full((3, 3, 4, 4), 128 / 255)  # 8-bit images, as loaded from PNG
    x[2] = 200 / 255  # called real even clean: wrong whatever the rounding
    y = torch.zeros(3, dtype=torch.long)

    def nudging(*args: object, **kwargs: object):  # noqa: ANN202 - stands in for make_attack: floats that fool
        def attack(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> AttackResult:
            adv = xb + 0.4 / 255  # less than half a level: rounds back
            zeros = torch.zeros(len(xb))
            return AttackResult(adv, model(adv).argmax(1) != yb, zeros, zeros, {})

        return attack

    monkeypatch.setattr(curves, "make_attack", nudging)
    model = Threshold()
    assert (model(x + 0.4 / 255).argmax(1) != y).all()  # the attack's own (float) verdict: every image fooled
    fooled = curves.attack_success(model, x, y, "fgsm", {"eps": 1 / 255})
    assert fooled.tolist() == [False, False, True]  # on the 8-bit images only the one far from the threshold


class Linear(nn.Module):
    """A linear 2-logit detector: APGD's first signed step reaches the optimum of the Linf ball, so success is
    exactly ``margin < eps * ||w||_1`` and hence monotone in eps: reuse must give the all-images numbers."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 3 * size * size).view(1, 3, size, size) + 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = ((x - 0.5) * self.w).flatten(1).sum(1)
        return torch.stack([-s, s], dim=1)


class Counting(nn.Module):
    """Counts the images that go through ``inner`` with a gradient (attack steps), not the no-grad evaluations."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.graded = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.graded += len(x) if x.requires_grad else 0
        return self.inner(x)


def _linear_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = Linear()
    gen = torch.Generator().manual_seed(0)
    # images near mid-grey (no clipping by [0, 1]) along w: their margins spread over the radii of the curve
    t = torch.linspace(-0.004, 0.004, 24)
    x = (0.5 + t.view(-1, 1, 1, 1) * model.w.detach().sign() + 0.001 * torch.randn(24, 3, 4, 4, generator=gen)).clamp(0, 1)
    y = (t > -0.0035).long()  # two images misclassified clean
    return model, x, y


def test_reuse_gives_the_all_images_curve_and_attacks_fewer_images() -> None:
    model, x, y = _linear_problem()
    eps = [0.0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255]
    counted = Counting(model)
    old = robustness_curve(counted, x, y, "linf", eps, steps=5, batch_size=8, reuse=False)
    old_work = counted.graded
    counted.graded = 0
    new = robustness_curve(counted, x, y, "linf", eps, steps=5, batch_size=8)
    assert [r["accuracy"] for r in new] == [r["accuracy"] for r in old]
    acc = [r["accuracy"] for r in new]
    assert acc[0] > acc[2] > acc[-1] == 0.0  # the radii matter: the test would see a wrong reuse
    assert [r["attacked"] for r in old] == [0, 24, 24, 24, 24]
    assert sum(r["attacked"] for r in new) < 96 and new[1]["attacked"] == int(old[0]["accuracy"] * 24)
    assert 0 < counted.graded < old_work  # fewer gradient evaluations, not only fewer images on paper


def test_chain_correct_matches_each_radius_per_image_and_never_revives_an_image() -> None:
    model, x, y = _linear_problem()
    radii = [0.0, 1 / 255, 3 / 255]
    correct, attacked = chain_correct(model, x, y, "linf", radii, steps=5)
    for i, eps in enumerate(radii):
        alone = robustness_curve(model, x, y, "linf", [eps], steps=5, batch_size=24, reuse=False)[0]
        assert int(correct[i].sum()) == round(alone["accuracy"] * 24)
    assert not (correct[1:] & ~correct[:-1]).any()  # fooled once, fooled at every larger radius
    assert torch.equal(attacked[1:], correct[:-1]) and not attacked[0].any()  # attacked exactly where still correct
    with pytest.raises(Exception, match="increase"):
        chain_correct(model, x, y, "linf", [0.0, 2 / 255, 1 / 255])
