"""Robustness curves and the gradient-masking checks, on the toy detector and on models built to mask gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.studies.masking_checks import gradient_checks, monotone_check, weaker_beats_stronger
from dfrobust.studies.curves import robustness_curve, run_curves
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
    (out / "parts" / "part-00003.csv").unlink()  # the last point (l2 0.5): redone on the rerun
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
