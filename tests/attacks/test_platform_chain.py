"""Platform chains (--robust-to): the parser's errors, the real transforms, BPDA stand-ins, EOT gradients, the attack stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfrobust.attacks.chain import apply_chain, apply_drawn, draw_params, format_chain, parse_chain
from dfrobust.attacks.diffjpeg import diff_jpeg
from dfrobust.studies.attack_run import AttackConfig, run_attack
from dfrobust.attacks.robust import RobustModel, platform_experiment, run_platform
from dfrobust.cli import main
from dfrobust.errors import DfrobustError
from dfrobust.utils.imageops import gaussian_blur, jpeg_round_trip
from dfrobust.utils.io import read_csv


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is empty"),
        ("gzip:1-2", "unknown step 'gzip'"),
        ("jpeg", "needs a value"),
        ("jpeg:95-50", "runs backwards"),
        ("jpeg:0-50", "must lie in 1..100"),
        ("jpeg:50.5", "takes whole numbers"),
        ("resize:a", "wants a number"),
        ("resize:0.5-2", "must lie in 0.1..1"),
        ("blur:inf", "not finite"),
        ("jpeg:50-95,,blur:1", "unknown step ''"),
    ],
)
def test_chain_parser_gives_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(DfrobustError, match=message) as err:
        parse_chain(spec)
    assert "\n" not in str(err.value) and "--robust-to" in str(err.value)


def test_chain_is_normalised_and_recorded_as_written() -> None:
    chain = parse_chain(" JPEG:50-95, resize:0.50-1.0 ,blur:1,shift:0-2,crop:0.8-1")
    assert format_chain(chain) == "jpeg:50-95,resize:0.5-1,blur:1,shift:0-2,crop:0.8-1"
    assert parse_chain(format_chain(chain)) == chain


def test_cli_refuses_a_bad_chain_before_any_work(toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["attack", "--data", str(toy_dataset), "--source", str(toy_model), "--attack", "fgsm",
                 "--robust-to", "jpeg:50-150", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "jpeg (JPEG quality) must lie in 1..100" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_draws_follow_the_ranges_and_the_seed() -> None:
    chain = parse_chain("jpeg:50-95,blur:0-1")
    q, s = draw_params(chain, 500, torch.Generator().manual_seed(0))
    assert q.min() >= 50 and q.max() <= 95 and torch.equal(q, q.round()) and len(q.unique()) > 30
    assert s.min() >= 0 and s.max() <= 1
    x = torch.rand(3, 3, 16, 16)
    seeds = [5, 6, 7]
    one = apply_chain(x, chain, seeds)
    # an image's draw depends on its own seed only, not on the batch it is in
    assert torch.allclose(apply_chain(x[1:2], chain, seeds[1:2]), one[1:2])
    assert not torch.allclose(apply_chain(x, chain, [8, 9, 10]), one)


def test_fixed_steps_are_the_real_transforms() -> None:
    x = torch.rand(2, 3, 24, 24)
    assert torch.allclose(apply_chain(x, parse_chain("jpeg:70"), [0, 1]), jpeg_round_trip(x, 70))
    assert torch.allclose(apply_chain(x, parse_chain("blur:1.5"), [0, 1]), gaussian_blur(x, 1.5).clamp(0, 1))
    assert torch.allclose(apply_chain(x, parse_chain("resize:1"), [0, 1]), x)
    assert torch.allclose(apply_chain(x, parse_chain("shift:0"), [0, 1]), x, atol=1e-6)
    shifted = apply_chain(x, parse_chain("shift:3"), [0, 1])
    assert not torch.allclose(shifted, x)
    # a whole-pixel shift moves pixels without blending them: every output value is an input value
    assert torch.isin(shifted[0, 0, 8:16, 8:16], x[0, 0]).all()


def test_jpeg_forward_is_the_codec_and_backward_the_differentiable_jpeg() -> None:
    chain = parse_chain("jpeg:60")
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    params = draw_params(chain, 2, torch.Generator().manual_seed(0))
    out = apply_drawn(x, chain, params, torch.Generator())
    assert torch.allclose(out, jpeg_round_trip(x.detach(), 60))
    w = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((diff_jpeg(x2, torch.tensor([60.0, 60.0])) * w).sum(), x2)
    assert torch.allclose(grad, expected, atol=1e-5)
    assert not torch.allclose(grad, w)  # not the identity: JPEG's quantisation shapes the gradient


def test_differentiable_jpeg_tracks_the_codec() -> None:
    torch.manual_seed(0)
    x = gaussian_blur(torch.rand(4, 3, 32, 32), 1.0)  # smooth, image-like content
    for q in (50, 90):
        approx, real = diff_jpeg(x, torch.full((4,), float(q))), jpeg_round_trip(x, q)
        assert (approx - real).abs().mean() < (x - real).abs().mean()


class _Linear(nn.Module):
    """A linear 2-logit model, so input gradients are easy to predict."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)
        torch.manual_seed(0)
        nn.init.normal_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_eot_over_a_blur_gives_the_blurred_gradient() -> None:
    model, x = _Linear(), torch.rand(2, 3, 8, 8)
    y = torch.tensor([0, 1])

    def grad(m: nn.Module) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(m(xi), y, reduction="sum"), xi)
        return g

    plain = grad(model)
    robust = grad(RobustModel(model, parse_chain("blur:1.5"), eot=3))
    expected = grad(nn.Sequential(_Blur(1.5), model))
    assert torch.allclose(robust, expected, atol=1e-5)
    assert not torch.allclose(robust, plain, atol=1e-3)
    # the blur's adjoint smooths the gradient: less high-frequency energy than the plain one
    assert robust.diff(dim=-1).abs().mean() < plain.diff(dim=-1).abs().mean()


class _Blur(nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma).clamp(0, 1)


def test_eot_logits_are_the_mean_over_the_draws() -> None:
    model, x = _Linear(), torch.rand(2, 3, 8, 8)
    chain = parse_chain("resize:0.3-1,shift:0-2")
    robust = RobustModel(model, chain, eot=4, seed=3)
    logits = robust(x)
    gen = torch.Generator().manual_seed(3)
    xs = x.repeat(4, 1, 1, 1)
    manual = model(apply_drawn(xs, chain, draw_params(chain, 8, gen), gen)).view(4, 2, 2).mean(0)
    assert torch.allclose(logits, manual, atol=1e-6)
    assert not torch.allclose(robust(x), logits)  # each forward draws afresh


def test_attack_stage_records_the_chain_and_scores_after_it(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    cfg = AttackConfig("fgsm", {"eps": 0.05}, batch_size=4, max_images=6, device="cpu",
                       robust_to="jpeg:50-95,blur:0-1", robust_eot=2)  # fmt: skip
    assert cfg.heldout == "jpeg:30-45,resize:0.4-0.5"  # the default held-out chain
    summary = run_attack(toy_dataset, toy_model, [], cfg, tmp_path / "run")
    res = next(iter(summary["results"].values()))
    assert res["robust_to"] == "jpeg:50-95,blur:0-1" and res["platform_n"] == 6
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert {r["robust_to"] for r in rows} == {"jpeg:50-95,blur:0-1"}
    chain_acc = sum(int(r["chain_pred"]) == int(r["label"]) for r in rows) / len(rows)
    assert res["chain_accuracy"] == pytest.approx(chain_acc)
    assert 0 <= res["heldout_accuracy_ci"][0] <= res["heldout_accuracy"] <= res["heldout_accuracy_ci"][1]
    assert summary["config"]["robust_to"] == "jpeg:50-95,blur:0-1"


def test_plain_run_keeps_its_crafting_key(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    from dataclasses import asdict

    cfg = AttackConfig("fgsm", {"eps": 0.05}, batch_size=4, max_images=4, device="cpu")
    summary = run_attack(toy_dataset, toy_model, [], cfg, tmp_path / "run")
    assert "chain_accuracy" not in next(iter(summary["results"].values()))
    assert asdict(cfg)["robust_to"] is None


def test_platform_experiment_compares_plain_and_robust(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    from dfrobust.data.dataset import load_split
    from dfrobust.models.loading import load_model_arg

    model, _ = load_model_arg(toy_model, "cpu")
    test = load_split(toy_dataset, "test")
    s = platform_experiment(model, test.images()[:6], test.y[:6], test.paths[:6], "fgsm", {"eps": 0.05},
                            "jpeg:60-90", "jpeg:40", eot=2, out_dir=tmp_path / "p")  # fmt: skip
    assert set(s["success"]) == {"plain", "robust"}
    assert set(s["success"]["plain"]) == {"lossless", "chain", "heldout"}
    assert s["success"]["robust"]["chain"]["n"] == 6
    assert len(read_csv(tmp_path / "p" / "platform.csv")) == 12


def test_run_platform_reads_a_data_folder_and_a_detector_file(toy_dataset: Path, toy_model: Path, tmp_path: Path) -> None:
    s = run_platform(toy_dataset, toy_model, tmp_path / "p", "fgsm", {"eps": 0.05}, "blur:0-1", images=4, eot=2, device="cpu")
    assert s["n"] == 4 and s["robust_to"] == "blur:0-1" and s["model"]["sha256"]
    rows = read_csv(tmp_path / "p" / "platform.csv")
    assert {r["label"] for r in rows} == {"0"} and len(rows) == 8  # the test fakes, plain and robust
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(DfrobustError, match="already holds other files"):
        run_platform(toy_dataset, toy_model, other, robust_to="blur:1")
