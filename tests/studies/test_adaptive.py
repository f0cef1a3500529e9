"""Adaptive attacks through purifiers: BPDA stand-ins, EOT, worst-of-N evaluation, the stage and its CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.attacks.base import make_attack
from dfrobust.cli import main
from dfrobust.defenses.adaptive import PurifiedModel, check_bpda, evaluate_through, fit_blur_sigma
from dfrobust.studies.adaptive_run import run_adaptive
from dfrobust.defenses.base import Purifier, make_purifier
from dfrobust.defenses.dip import dip_purify
from dfrobust.defenses.dip_unroll import dip_unrolled
from dfrobust.errors import DfrobustError
from dfrobust.models.detectors import build_detector
from dfrobust.utils.imageops import gaussian_blur
from dfrobust.utils.io import read_csv, read_json

#: A DIP small enough for tests (two levels, a few iterations).
TINY_DIP = {"iterations": 8, "input_channels": 4, "channels_down": (4, 4), "channels_up": (4, 4), "channels_skip": (0, 2)}


class NoisePurifier(Purifier):
    """A random purifier for tests (not registered): uniform noise of amplitude ``amp``, image ``i`` drawn from seed ``seed + i`` (as DIP)."""

    name = "noise-test"
    random = True

    def __init__(self, amp: float = 0.1) -> None:
        self.amp = amp

    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        noise = torch.stack([torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(seed + i)) for i in range(len(x))])
        return x + (noise * 2 - 1) * self.amp


class CornerPixel(nn.Module):
    """Logits from one pixel's red value around 0.5: noise on that pixel flips the prediction easily."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0, 0, 0] - 0.5) * self.scale
        return torch.stack([-s, s], 1)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_detector("tiny").eval()


def _batch(n: int = 6, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen), torch.arange(n) % 2


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y), x)
    return logits.detach(), grad


def test_bpda_through_identity_is_plain_apgd_bit_for_bit() -> None:
    model, (x, y) = _model(), _batch()
    attack = make_attack("apgd", eps=4 / 255, steps=6, restarts=2, seed=3)
    plain = attack(model, x, y)
    through = attack(PurifiedModel(model, make_purifier("identity"), eot=4), x, y)
    assert torch.equal(plain.x_adv, through.x_adv)
    assert torch.equal(plain.success, through.success)
    assert torch.equal(plain.extras["loss"], through.extras["loss"])


def test_eot_with_a_deterministic_purifier_is_one_draw() -> None:
    model, (x, y) = _model(), _batch()
    blur = make_purifier("blur", sigma=1.0)
    one, five = PurifiedModel(model, blur, "surrogate", eot=1), PurifiedModel(model, blur, "surrogate", eot=5)
    assert five.draws == 1
    (l1, g1), (l5, g5) = _input_grad(one, x, y), _input_grad(five, x, y)
    assert torch.equal(l1, l5) and torch.equal(g1, g5)
    # the surrogate of a differentiable purifier is exact: the gradient of model(blur(x))
    _, g_true = _input_grad(lambda t: model(gaussian_blur(t, 1.0)), x, y)
    torch.testing.assert_close(g1, g_true)
    attack = make_attack("apgd", eps=4 / 255, steps=4)
    assert torch.equal(attack(one, x, y).x_adv, attack(five, x, y).x_adv)


def test_eot_averages_the_logits_of_independent_draws() -> None:
    model, (x, y) = _model(), _batch(n=4)
    noise = NoisePurifier(0.2)
    through = PurifiedModel(model, noise, "identity", eot=3, seed=7)
    logits, grad = _input_grad(through, x, y)
    seed = int(torch.randint(0, 1 << 62, (1,), generator=torch.Generator().manual_seed(7)))
    draws = model(noise(x.repeat(3, 1, 1, 1), seed)).detach().view(3, 4, 2)
    torch.testing.assert_close(logits, draws.mean(0))
    assert not torch.allclose(draws[0], draws[1])  # the rows of one forward are different draws
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # a zero-amplitude random purifier: the EOT mean of identical draws is one draw
    silent = PurifiedModel(model, NoisePurifier(0.0), "identity", eot=4)
    torch.testing.assert_close(_input_grad(silent, x, y)[1], _input_grad(model, x, y)[1])


def test_worst_of_n_fools_at_least_as_often_as_one_draw() -> None:
    model, (x, y) = CornerPixel(), _batch(n=16)
    with torch.no_grad():
        y = model(x).argmax(1)  # correct on clean images, so the noise decides
    res = evaluate_through(model, NoisePurifier(0.5), x, y, draws=6, seed=2, batch_size=5)
    assert res["draws"] == 6 and res["p_real_draws"].shape == (6, 16)
    assert bool((res["fooled_any"] | res["correct_one"]).all())  # fooled on draw 0 implies fooled on some draw
    assert res["accuracy_worst"] <= res["accuracy_one"]
    assert res["accuracy_worst"] < 1.0  # strong noise fools some draw
    # draws do not depend on the batching (seed = draw seed + image index)
    again = evaluate_through(model, NoisePurifier(0.5), x, y, draws=6, seed=2, batch_size=16)
    torch.testing.assert_close(res["p_real_draws"], again["p_real_draws"])
    det = evaluate_through(model, make_purifier("blur"), x, y, draws=6)
    assert det["draws"] == 1 and det["accuracy_worst"] == det["accuracy_one"]


def test_fitted_blur_recovers_the_sigma_of_blurred_images() -> None:
    gen = torch.Generator().manual_seed(0)
    x = gaussian_blur(torch.rand(4, 3, 32, 32, generator=gen), 0.7)  # some texture, not pure noise
    sigma = torch.tensor([0.0, 0.5, 1.5, 3.0])
    target = gaussian_blur(x, sigma) + torch.randn(x.shape, generator=gen) * 1e-3
    assert torch.equal(fit_blur_sigma(x, target), sigma)


def test_fitted_blur_gradient_is_the_fitted_blur() -> None:
    model, (x, y) = _model(), _batch(n=4)
    blur = make_purifier("blur", sigma=2.0)
    fitted = PurifiedModel(model, blur, "fitted-blur")
    _, g = _input_grad(fitted, x, y)
    _, g_true = _input_grad(lambda t: model(gaussian_blur(t, 2.0)), x, y)
    torch.testing.assert_close(g, g_true, rtol=1e-4, atol=1e-6)
    assert fitted.sigma_mean == pytest.approx(2.0)


def test_unrolled_dip_matches_dip_and_has_a_gradient_of_its_own() -> None:
    dip = make_purifier("dip", **TINY_DIP)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    out = dip_unrolled(xr, [5, 6], dip.config, dip.classify_at, steps=3)
    torch.testing.assert_close(out.detach(), dip_purify(x, dip.config, seed=5, iteration=dip.classify_at), rtol=0, atol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), xr)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    cos = nn.functional.cosine_similarity(grad.flatten(), torch.ones_like(grad).flatten(), dim=0)
    assert cos < 0.99  # not the identity's gradient of out.sum()


def test_bpda_modes_are_checked_before_work() -> None:
    with pytest.raises(DfrobustError, match="no differentiable surrogate"):
        check_bpda(make_purifier("dip", **TINY_DIP), "surrogate")
    with pytest.raises(DfrobustError, match="not DIP"):
        check_bpda(make_purifier("blur"), "unroll")
    with pytest.raises(DfrobustError, match="--bpda must be one of"):
        check_bpda(make_purifier("blur"), "magic")
    with pytest.raises(DfrobustError, match="--eot"):
        PurifiedModel(_model(), make_purifier("blur"), eot=0)


def test_run_adaptive_through_dip_writes_rows_and_resumes(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "adaptive"
    kwargs = dict(eot=2, bpda="fitted-blur", attack_purifier_params={"iterations": 6}, eval_draws=2,
                  images=4, batch_size=2, seed=1, device="cpu")  # fmt: skip
    summary = run_adaptive(toy_dataset, toy_model, "dip", TINY_DIP, "apgd", {"steps": 2, "eps": 8 / 255}, out, **kwargs)
    assert summary["complete"] and summary["n"] == 4 and summary["defense"] == "dip"
    assert summary["config"]["attack_purifier"]["iterations"] == 6 and summary["config"]["defense"]["iterations"] == 8
    for key in ("accuracy_nonadaptive", "accuracy_adaptive", "accuracy_adaptive_worst"):
        lo, hi = summary[f"{key}_ci"]
        assert lo <= summary[key] <= hi
    assert summary["accuracy_adaptive_worst"] <= summary["accuracy_adaptive"]
    assert summary["fitted_sigma_mean"] is not None
    assert summary["attack_purifier_cheaper"] and summary["accuracy_adaptive_any_iterate"] is None  # not the defense's purifications
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and all((out / "images" / Path(r["image"]).with_suffix(".png")).is_file() for r in rows)
    assert all(int(r["eval_draws"]) == 2 for r in rows)
    # a lost batch is redone exactly; a finished run is returned as it is
    (out / "parts" / "part-00001.csv").unlink()
    (out / "summary.json").unlink()
    again = run_adaptive(toy_dataset, toy_model, "dip", TINY_DIP, "apgd", {"steps": 2, "eps": 8 / 255}, out, **kwargs)
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(out / "results.csv")] == timeless
    assert again["fingerprint"] == summary["fingerprint"]
    with pytest.raises(DfrobustError, match="another adaptive run"):
        run_adaptive(toy_dataset, toy_model, "dip", TINY_DIP, "apgd", {"steps": 3, "eps": 8 / 255}, out, **kwargs)


def test_cli_attack_through_blur_with_eot(toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "through-blur"
    base = ["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "apgd", "--steps", "3",
            "--max-images", "6", "--batch-size", "4", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert (
        main(base + ["--through", "blur", "--purifier-set", "blur.sigma=1.5", "--eot", "2", "--bpda", "surrogate", "--eval-draws", "2"])
        == 0
    )
    summary = read_json(out / "summary.json")
    assert summary["n"] == 6 and summary["eot"] == 2 and summary["bpda"] == "surrogate"
    assert summary["eval_draws"] == 1  # blur is deterministic: one draw is all draws
    assert summary["config"]["defense"] == {"purifier": "blur", "sigma": 1.5}
    assert len(read_csv(out / "results.csv")) == 6
    assert "adaptive, purified" in capsys.readouterr().out
    assert main(base[:-1] + [str(tmp_path / "x"), "--eot", "2"]) == 2  # --eot without --through
    assert main(base[:-1] + [str(tmp_path / "y"), "--through", "blur", "--attack-purifier-set", "radius=3"]) == 2


def test_exact_bpda_is_dip_s_value_with_the_exact_gradient() -> None:
    dip = make_purifier("dip", **TINY_DIP, dtype="float64")
    model = _model().double()
    x, y = _batch(2, 16)
    x = x.double()
    through = PurifiedModel(model, dip, bpda="exact", eot=1, seed=3)
    seed = PurifiedModel(model, dip, bpda="exact", eot=1, seed=3).next_seed()
    xr = x.clone().requires_grad_(True)
    logits = through(xr)
    torch.testing.assert_close(logits.detach(), model(dip(x, seed)), rtol=0, atol=1e-10)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y), xr)
    # the same gradient by finite differences along the gradient itself (the seed fixed: one draw)
    d = grad / grad.norm()
    h = 1e-7

    def loss(z: torch.Tensor) -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(dip(z, seed)), y))

    fd = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    assert fd == pytest.approx(float(grad.norm()), rel=1e-3)
    with pytest.raises(DfrobustError, match="not DIP"):
        check_bpda(make_purifier("jpeg"), "exact")


def test_attack_draws_never_meet_evaluation_draws() -> None:
    from dfrobust.defenses.adaptive import ATTACK_SEED_BASE, draw_seed

    through = PurifiedModel(_model(), NoisePurifier(), eot=2, seed=0)
    assert all(through.next_seed() >= ATTACK_SEED_BASE for _ in range(50))
    assert draw_seed(2**20, 1000) + 10_000 < ATTACK_SEED_BASE
    x, y = _batch(2)
    with pytest.raises(DfrobustError, match="smaller --seed"):
        evaluate_through(_model(), NoisePurifier(), x, y, draws=2, seed=ATTACK_SEED_BASE)


def test_watching_records_every_image_an_iterate_fooled() -> None:
    x = torch.full((4, 3, 4, 4), 0.5)
    x[:, 0, 0, 0] = torch.tensor([0.45, 0.55, 0.2, 0.9])  # images 0 and 1 sit within the noise of the boundary
    y = torch.tensor([0, 1, 0, 1])  # every clean image right: fake below 0.5, real above
    through = PurifiedModel(CornerPixel(), NoisePurifier(amp=0.2), eot=8, seed=0)
    through.watch(y)
    with torch.no_grad():
        through(x)
        through(x[:2])  # not the watched batch: not recorded
    assert through.fooled_iterates.tolist() == [True, True, False, False]


def test_run_adaptive_exact_reports_every_rule(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "exact"
    summary = run_adaptive(toy_dataset, toy_model, "dip", {**TINY_DIP, "iterations": 5}, "apgd", {"steps": 2, "eps": 8 / 255}, out,
                           eot=1, bpda="exact", segment=2, eval_draws=3, images=3, batch_size=3, seed=1, device="cpu",
                           nonadaptive=False)  # fmt: skip
    assert summary["bpda"] == "exact" and summary["config"]["segment"] == 2 and not summary["attack_purifier_cheaper"]
    rows = read_csv(out / "results.csv")
    for r in rows:
        fooled_draws = int(r["eval_draws"]) - int(r["adaptive_correct_draws"])
        assert int(r["adaptive_fooled_any"]) == (fooled_draws > 0)
        assert (int(r["adaptive_vote_pred"]) == int(r["label"])) == (2 * int(r["adaptive_correct_draws"]) > 3)
        assert int(r["adaptive_iterates_fooled_any"]) >= int(r["adaptive_fooled_any"])
    assert summary["accuracy_adaptive_any_iterate"] <= summary["accuracy_adaptive_worst"] <= summary["accuracy_adaptive_vote"] + 1e-9
    assert summary["accuracy_defended"] <= summary["accuracy_adaptive_worst"]


def test_unbounded_sanity_attack_fools_every_image(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    summary = run_adaptive(toy_dataset, toy_model, "blur", {"sigma": 1.0}, "apgd", {"steps": 5, "eps": 2 / 255}, tmp_path / "s",
                           bpda="surrogate", images=4, batch_size=4, seed=1, device="cpu", nonadaptive=False, sanity_images=3)  # fmt: skip
    sanity = summary["sanity"]
    assert sanity["n"] == 3 and sanity["eps"] == 1.0 and sanity["norm"] == "linf"
    assert sanity["passed"] and sanity["fooled"] == 3  # with the whole pixel cube, the surrogate gradient must win
