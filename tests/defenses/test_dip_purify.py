"""Batched DIP purification: batch = separate runs, what the trajectory records, the transform baselines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dfrobust.defenses.dip import DipConfig, dip_purify, purify_batch, recorded_iterations
from dfrobust.defenses.transforms import blur_purify, jpeg_purify
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.image_metrics import psnr_from_mse as psnr
from dfrobust.models.checkpoint import load_detector
from dfrobust.models.inference import p_real

#: the authors' network structure at 2 levels: same code path, a fraction of the cost
SMALL = {"channels_down": (4, 8), "channels_up": (4, 8), "channels_skip": (0, 2), "input_channels": 6}


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_a_batch_follows_the_same_trajectory_as_separate_runs() -> None:
    x, seeds = _images(3), [7, 8, 9]
    cfg = DipConfig(iterations=6, record_every=1, dtype="float64", **SMALL)
    batch = purify_batch(x, seeds, cfg, show_progress=False)
    for b in range(3):
        alone = purify_batch(x[b : b + 1], seeds[b : b + 1], cfg, show_progress=False)
        torch.testing.assert_close(alone.final, batch.final[b : b + 1], rtol=0, atol=1e-10)
        torch.testing.assert_close(alone.mse_input[0], batch.mse_input[b], rtol=0, atol=1e-12)
    # the trajectory moved (otherwise equality would prove nothing)
    assert batch.mse_input[:, -1].lt(batch.mse_input[:, 0]).all()


def test_float32_batch_matches_separate_runs_before_adam_and_is_deterministic() -> None:
    # float32 grouped and single convolutions round differently; Adam's sign-like first steps
    # amplify that, so the float32 comparison is made on the first forward pass.
    x, seeds = _images(2, 32), [1, 2]
    cfg = DipConfig(iterations=1, record_every=1, **SMALL)
    batch = purify_batch(x, seeds, cfg, show_progress=False)
    alone = purify_batch(x[1:], seeds[1:], cfg, show_progress=False)
    torch.testing.assert_close(alone.final, batch.final[1:], rtol=0, atol=1e-4)
    cfg3 = dataclasses.replace(cfg, iterations=3)
    again = [purify_batch(x, seeds, cfg3, show_progress=False).final for _ in range(2)]
    assert torch.equal(again[0], again[1])


def test_trajectory_records_what_it_says(toy_dataset: Path, toy_model: Path) -> None:
    from dfrobust.data.dataset import load_split

    model, _ = load_detector(toy_model)
    test = load_split(toy_dataset, "test", limit=2, seed=0)
    clean = test.images()
    x = (clean + 0.05 * _images(2, 32, seed=3)).clamp(0, 1)
    cfg = DipConfig(iterations=12, record_every=4, ema_weight=0.5, **SMALL)
    traj = purify_batch(x, [3, 4], cfg, classifier=model, clean=clean, keep=[3, 8], stop_at=9, show_progress=False)

    assert traj.iterations == [3, 4, 8] == recorded_iterations(9, 4, [3, 8])  # stop_at 9: nothing later
    assert set(traj.snapshots) == {3, 8} and traj.p_real_raw.shape == (2, 3)
    for t in (3, 8):
        j, snap = traj.index(t), traj.snapshots[t]
        torch.testing.assert_close(traj.p_real_raw[:, j], p_real(model, snap), atol=1e-6, rtol=0)
        mse = (snap - x).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(traj.mse_input[:, j], mse, atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(traj.psnr_input[:, j], 10 * torch.log10(1 / mse), atol=1e-4, rtol=0)
        clean_mse = (snap - clean).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(traj.psnr_clean[:, j], psnr(clean_mse), atol=1e-4, rtol=0)
    # the exponential average is recorded separately, and it differs from the raw output
    assert not torch.allclose(traj.p_real_avg, traj.p_real_raw)
    assert traj.final.shape == x.shape and torch.equal(traj.final, traj.snapshots[8]) is False


def test_exponential_average_follows_its_formula() -> None:
    x = _images(1, 16)
    cfg = DipConfig(iterations=3, record_every=1, ema_weight=0.9, **SMALL)
    traj = purify_batch(x, [5], cfg, keep=[1, 2, 3], show_progress=False)
    s = traj.snapshots
    expected = (s[1] * 0.9 + s[2] * 0.1) * 0.9 + s[3] * 0.1
    torch.testing.assert_close(traj.final_avg, expected, atol=1e-6, rtol=0)


def test_odd_sizes_are_padded_and_cropped_back() -> None:
    x = _images(2, 16)[:, :, :13, :10]
    out = dip_purify(x, DipConfig(iterations=2, **SMALL), seed=0)
    assert out.shape == (2, 3, 13, 10) and 0 < out.min() and out.max() < 1


def test_config_is_json_serialisable_and_validated() -> None:
    cfg = DipConfig()
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert d["channels_down"] == [8, 16, 32, 64, 128] and d["channels_skip"] == [0, 0, 0, 4, 4]
    assert d["lr"] == 0.01 and d["input_channels"] == 32 and d["ema_weight"] == 0.99
    assert DipConfig(**d) == cfg
    with pytest.raises(DfrobustError, match="amp"):
        DipConfig(amp="fp8")


def test_transform_purifiers_keep_shape_and_do_what_they_say() -> None:
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()
    jp = jpeg_purify(smooth, quality=90)
    assert jp.shape == smooth.shape and (jp - smooth).abs().mean() < 0.02
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32)) % 2).float().expand(1, 3, 32, 32)
    blurred = blur_purify(checker, sigma=1.0)
    assert blurred.shape == checker.shape and blurred.std() < 0.2 * checker.std()
    with pytest.raises(DfrobustError):
        blur_purify(checker, sigma=0)


def test_purifier_parameters_are_checked_by_their_declared_constraints() -> None:
    """Jpeg, Blur and Dip declare their constraints once (``params``); the constructor and DipConfig check by them."""
    from dfrobust.defenses.base import make_purifier

    for name, kw, says in (
        ("jpeg", {"quality": 0}, "jpeg: quality (--quality) = 0 needs a whole number >= 1 and <= 100"),
        ("blur", {"sigma": 0}, "blur: sigma (--sigma) = 0 needs a finite number in (0, inf)"),
        ("dip", {"lr": -1.0}, "dip: lr (--lr) = -1.0 needs a finite number in (0, inf)"),
        ("dip", {"classify_at": 0}, "dip: classify_at (--classify-at) = 0 needs a whole number >= 1"),
        ("dip", {"input_noise": "pink"}, "dip: input_noise (--input-noise) = 'pink' must be one of 'uniform', 'normal'"),
    ):
        with pytest.raises(DfrobustError) as err:
            make_purifier(name, **kw)
        assert str(err.value) == says
    with pytest.raises(DfrobustError, match=r"^dip: record_every \(--record-every\) = 0 needs a whole number >= 1$"):
        DipConfig(record_every=0)
    with pytest.raises(DfrobustError, match="classify_at must lie in 1..10"):  # a relation between two parameters
        make_purifier("dip", iterations=10, classify_at=11)
