"""Training augmentation: batched per-image blur vs torchvision, blur fraction, sigma scaling, flips."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from dfrobust.data.augment import Augment, scaled_sigma
from dfrobust.errors import DfrobustError
from dfrobust.train.config import TrainConfig
from dfrobust.train.steps import build_augment
from dfrobust.utils.imageops import gaussian_blur as gaussian_blur_batch


def test_sigma_is_given_at_the_paper_width_and_scaled() -> None:
    assert scaled_sigma((3.0, 5.0), 300) == (3.0, 5.0)
    lo, hi = scaled_sigma((3.0, 5.0), 64)
    assert lo == pytest.approx(0.64) and hi == pytest.approx(64 * 5 / 300)
    aug = build_augment(TrainConfig(blur_fraction=0.4), width=150)
    assert aug.blur_sigma == pytest.approx((1.5, 2.5)) and aug.blur_fraction == 0.4 and aug.hflip


def test_batched_blur_matches_torchvision_per_image() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 3, 20, 24)
    sigma = torch.tensor([0.7, 1.3, 2.0])
    ks = 13
    out = gaussian_blur_batch(x, sigma, kernel_size=ks)
    for i in range(3):
        ref = gaussian_blur(x[i], [ks, ks], [float(sigma[i])] * 2)
        assert torch.allclose(out[i], ref, atol=1e-5)


def test_blur_hits_the_asked_fraction_of_images() -> None:
    x = torch.rand(600, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = Augment(hflip=False, blur_fraction=0.4, blur_sigma=(0.8, 1.2))(x, gen)
    changed = (out - x).flatten(1).abs().amax(1) > 1e-6
    # Binomial(600, 0.4): mean 240, sd 12
    assert 190 <= int(changed.sum()) <= 290
    assert torch.equal(Augment(hflip=False, blur_fraction=0.0)(x, gen), x)
    assert bool(((Augment(hflip=False, blur_fraction=1.0, blur_sigma=(1, 1))(x, gen) - x).flatten(1).abs().amax(1) > 1e-6).all())


def test_drawn_sigmas_stay_in_range() -> None:
    # a blurred constant-with-one-spike image reveals its sigma through the spike's peak height
    x = torch.zeros(400, 3, 15, 15)
    x[:, :, 7, 7] = 1.0
    out = Augment(hflip=False, blur_fraction=1.0, blur_sigma=(1.0, 2.0))(x, torch.Generator().manual_seed(1))
    peak = out[:, 0, 7, 7]
    lo_peak = gaussian_blur_batch(x[:1], torch.tensor([2.0]))[0, 0, 7, 7]
    hi_peak = gaussian_blur_batch(x[:1], torch.tensor([1.0]))[0, 0, 7, 7]
    assert bool(((peak >= lo_peak - 1e-6) & (peak <= hi_peak + 1e-6)).all())
    assert peak.max() - peak.min() > 0.5 * (hi_peak - lo_peak)  # the sigmas do spread over the range


def test_flips_are_seeded_and_about_half() -> None:
    x = torch.rand(400, 3, 4, 6)
    aug = Augment(hflip=True)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    flipped = torch.isclose(a, x.flip(-1)).flatten(1).all(1)
    kept = torch.isclose(a, x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 150 <= int(flipped.sum()) <= 250


def test_bad_blur_settings_are_user_errors() -> None:
    with pytest.raises(DfrobustError, match="blur-fraction"):
        Augment(blur_fraction=1.5)
    with pytest.raises(DfrobustError, match="blur-sigma"):
        Augment(blur_fraction=0.4, blur_sigma=(5.0, 3.0))
