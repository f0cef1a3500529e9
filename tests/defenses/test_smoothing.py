"""Randomized smoothing against the closed form of a linear classifier, and `dfrobust certify` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy import stats

from dfrobust.cli import main
from dfrobust.defenses.smoothing import ABSTAIN, certify, smooth_predict
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import clopper_pearson_lower, wilson_interval
from dfrobust.utils.io import read_csv

SIGMA, N0, N, ALPHA = 0.5, 100, 2000, 0.001


class Linear(torch.nn.Module):
    """``f(x) = 1 (real) if w.x + b > 0 else 0``, as two logits ``(-s, s)`` with ``s = w.x + b``."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([-s, s], dim=1)


def linear_case() -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """A linear model and points at signed distances (in units of sigma) from its hyperplane, with those distances."""
    torch.manual_seed(0)
    w = torch.randn(3, 2, 2)
    model = Linear(w, b=0.3)
    unit = w / w.norm()
    base = torch.rand(3, 2, 2)
    base = base - ((base.flatten() @ w.flatten() + 0.3) / w.norm()) * unit  # on the hyperplane
    ratios = torch.tensor([0.0, 0.2, -0.5, 1.0, -1.5, 5.0])
    x = base[None] + (ratios * SIGMA)[:, None, None, None] * unit[None]
    return model, x, ratios.abs() * SIGMA


def bound_radius(k: float) -> float:
    """The radius certify returns when the top class is counted ``k`` times of ``N``."""
    p = float(clopper_pearson_lower(min(max(k, 0), N), N, ALPHA))
    return SIGMA * stats.norm.ppf(p) if p >= 0.5 else 0.0


def test_certify_matches_the_exact_radius_of_a_linear_classifier() -> None:
    model, x, distance = linear_case()
    # batch_size 300 does not divide n: forward passes mix the noisy copies of two images
    cert = certify(model, x, SIGMA, n0=N0, n=N, alpha=ALPHA, batch_size=300, seed=3)
    assert cert.counts.sum(1).tolist() == [N] * len(x) and cert.selection_counts.sum(1).tolist() == [N0] * len(x)
    labels = (x.flatten(1) @ model.w.detach().flatten() + model.b > 0).long()
    # on the hyperplane pA = 1/2: abstain
    assert cert.prediction[0] == ABSTAIN and cert.radius[0] == 0
    for i in range(1, len(x)):
        d = float(distance[i])
        p_true = stats.norm.cdf(d / SIGMA)  # pA of the smoothed linear classifier
        assert cert.prediction[i] == labels[i], i
        # never above the exact certified radius (the distance to the hyperplane) ...
        assert float(cert.radius[i]) <= d + 1e-9, (i, float(cert.radius[i]), d)
        # ... and where the Clopper-Pearson bound of a count within 4 standard deviations of its mean puts it
        sd = math.sqrt(N * p_true * (1 - p_true))
        assert bound_radius(N * p_true - 4 * sd) - 1e-9 <= float(cert.radius[i]) <= bound_radius(N * p_true + 4 * sd) + 1e-9, i
        assert float(cert.pa_lower[i]) == pytest.approx(float(clopper_pearson_lower(cert.counts[i, labels[i]], N, ALPHA)))
    # far from the boundary every sample agrees: the radius is the bound's ceiling sigma * Phi^-1(alpha^(1/n))
    assert cert.counts[5, labels[5]] == N
    assert float(cert.radius[5]) == pytest.approx(SIGMA * stats.norm.ppf(ALPHA ** (1 / N)))
    # seeded: the same seed gives the same certificate, another seed other counts
    again = certify(model, x, SIGMA, n0=N0, n=N, alpha=ALPHA, batch_size=300, seed=3)
    assert torch.equal(again.counts, cert.counts) and torch.equal(again.radius, cert.radius)
    assert not torch.equal(certify(model, x, SIGMA, n0=N0, n=N, alpha=ALPHA, batch_size=300, seed=4).counts, cert.counts)


def test_smooth_predict_abstains_only_where_the_classes_tie() -> None:
    model, x, _ = linear_case()
    labels = (x.flatten(1) @ model.w.detach().flatten() + model.b > 0).long()
    pred = smooth_predict(model, x, SIGMA, n=N, alpha=ALPHA, batch_size=512, seed=0)
    assert pred[0] == ABSTAIN
    assert torch.equal(pred[1:], labels[1:])


def test_intervals() -> None:
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert float(clopper_pearson_lower(0, 10, 0.05)) == 0.0
    # k = n: the bound is alpha^(1/n)
    assert float(clopper_pearson_lower(10, 10, 0.05)) == pytest.approx(0.05**0.1)
    with pytest.raises(DfrobustError, match="sigma"):
        certify(Linear(torch.ones(3, 2, 2), 0.0), torch.rand(1, 3, 2, 2), sigma=0.0)


def test_certify_command_writes_per_image_rows_a_curve_and_a_summary(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cert"
    args = [
        "certify",
        "--model",
        str(toy_model),
        "--data",
        str(toy_dataset),
        "--sigma",
        "0.12",
        "--n0",
        "20",
        "--n",
        "100",
        "--alpha",
        "0.01",
        "--max-images",
        "10",
        "--classes",
        "both",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "certified accuracy" in capsys.readouterr().out
    rows = read_csv(out / "certify.csv")
    assert len(rows) == 10 and {"image", "label", "prediction", "correct", "radius", "pA_lower", "count_fake", "count_real"} <= set(rows[0])
    for row in rows:
        assert int(row["count_fake"]) + int(row["count_real"]) == 100
        assert (int(row["prediction"]) == ABSTAIN) == (float(row["radius"]) == 0.0 and float(row["pA_lower"]) < 0.5)
        assert int(row["correct"]) == (int(row["prediction"]) == int(row["label"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 10 and summary["settings"]["sigma"] == 0.12 and summary["settings"]["n"] == 100
    at = {a["radius"]: a for a in summary["certified_accuracy"]}
    assert set(at) == {0.0, 0.25, 0.5, 1.0}
    correct = sum(int(r["correct"]) for r in rows)
    assert at[0.0]["certified"] == correct and at[0.0]["n"] == 10 and at[0.0]["ci_low"] <= at[0.0]["accuracy"] <= at[0.0]["ci_high"]
    curve = read_csv(out / "curve.csv")
    accs = [float(r["certified_accuracy"]) for r in curve]
    assert accs == sorted(accs, reverse=True) and float(curve[0]["radius"]) == 0.0 and int(curve[0]["n"]) == 10
    # a second run with the same settings reuses the results; other settings in the same folder are refused
    before = (out / "certify.csv").read_text()
    assert main(args) == 0 and (out / "certify.csv").read_text() == before
    assert main([*args[:-2], "--sigma", "0.5", "--out", str(out)]) == 2
    assert "another certify run" in capsys.readouterr().err


def test_interrupted_certification_resumes_to_the_same_rows(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dfrobust.studies import certification
    from dfrobust.studies.certification import PART_IMAGES, CertifyConfig, run_certification

    cfg = CertifyConfig(sigma=0.12, n0=10, n=50, max_images=PART_IMAGES + 8, device="cpu")
    straight = run_certification(toy_dataset, toy_model, cfg, tmp_path / "straight", log=lambda m: None)
    real = certification.certify
    calls = []

    def fail_on_second_part(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(certification, "certify", fail_on_second_part)
    with pytest.raises(KeyboardInterrupt):
        run_certification(toy_dataset, toy_model, cfg, tmp_path / "resumed", log=lambda m: None)
    assert not (tmp_path / "resumed" / "summary.json").exists()
    monkeypatch.setattr(certification, "certify", real)
    resumed = run_certification(toy_dataset, toy_model, cfg, tmp_path / "resumed", log=lambda m: None)
    assert read_csv(tmp_path / "resumed" / "certify.csv") == read_csv(tmp_path / "straight" / "certify.csv")
    assert resumed["certified_accuracy"] == straight["certified_accuracy"] and resumed["n_images"] == PART_IMAGES + 8
    with pytest.raises(DfrobustError, match="not empty"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.txt").write_text("mine")
        run_certification(toy_dataset, toy_model, cfg, tmp_path / "other", log=lambda m: None)
