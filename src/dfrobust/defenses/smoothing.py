"""Randomized smoothing (Cohen, Rosenfeld and Kolter 2019): certified L2 robustness by Gaussian noise.

The smoothed classifier ``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, keeps its
prediction within L2 radius ``sigma * Phi^-1(pA)`` of ``x`` when its top class has probability
``pA >= 1/2``. :func:`certify` estimates this as Cohen et al.'s ``Smooth.certify`` (their
``code/core.py``): the top class is guessed from ``n0`` noisy samples, then ``n`` fresh samples
give a one-sided ``1 - alpha`` Clopper-Pearson lower bound ``pA_lower`` on its probability; the
certificate is ``sigma * Phi^-1(pA_lower)``, or abstain when ``pA_lower < 1/2``. With probability
at least ``1 - alpha`` over the noise, a returned class is ``g(x)`` and ``g`` is constant on that ball.
:func:`smooth_predict` is their ``Smooth.predict`` (a two-sided binomial test between the two top
classes; abstain when it cannot tell them apart at level ``alpha``).

Noise is added in pixel space (the detector's own normalisation is inside the model) and not
clipped to ``[0, 1]``, as in Cohen et al. Sampling is batched: the noisy copies of many images
share one forward pass, ``batch_size`` rows at a time; the noise comes from a ``torch.Generator``
on the model's device, seeded, so a run is repeatable on one device (CPU and CUDA draw differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from dfrobust.attacks.base import frozen_eval, model_device
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import clopper_pearson_lower

#: The prediction of an image the smoothed classifier abstains on.
ABSTAIN = -1


def _check(sigma: float, n: int, alpha: float, batch_size: int) -> None:
    if sigma <= 0:
        raise DfrobustError(f"--sigma must be positive, got {sigma}")
    if n < 1:
        raise DfrobustError(f"the number of noise samples must be at least 1, got {n}")
    if not 0 < alpha < 1:
        raise DfrobustError(f"--alpha must lie in (0, 1), got {alpha}")
    if batch_size < 1:
        raise DfrobustError(f"--batch-size must be at least 1, got {batch_size}")


def noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` (where the noise is drawn), seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def sample_counts(model: nn.Module, x: torch.Tensor, sigma: float, num: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Class counts of ``model`` on ``num`` noisy copies of each image: a ``B x C`` int64 tensor.

    The ``B * num`` copies are classified ``batch_size`` at a time (a forward pass may mix images).
    """
    device = model_device(model)
    x = x.detach().to(device, torch.float32)
    owner = torch.arange(len(x), device=device).repeat_interleave(num)
    counts: torch.Tensor | None = None
    with frozen_eval(model), torch.no_grad():
        for start in range(0, len(owner), batch_size):
            idx = owner[start : start + batch_size]
            batch = x[idx]
            noise = torch.randn(batch.shape, generator=generator, device=device, dtype=batch.dtype)
            logits = model(batch + sigma * noise)
            pred = logits.argmax(1)
            if counts is None:
                counts = torch.zeros(len(x), logits.shape[1], dtype=torch.long, device=device)
            counts.index_put_((idx, pred), torch.ones_like(pred), accumulate=True)
    if counts is None:
        raise ValueError("no images to sample")
    return counts.cpu()


@dataclass
class Certificate:
    """Per-image results of :func:`certify` for ``B`` images (CPU tensors).

    Attributes:
        prediction: smoothed class per image, :data:`ABSTAIN` (-1) when not certified.
        radius: certified L2 radius (0 when abstaining), in ``[0, 1]`` pixel units over ``3 H W`` values.
        pa_lower: the ``1 - alpha`` lower confidence bound on the top class's probability.
        counts: ``B x C`` class counts of the ``n`` estimation samples.
        selection_counts: ``B x C`` class counts of the ``n0`` selection samples.
    """

    prediction: torch.Tensor
    radius: torch.Tensor
    pa_lower: torch.Tensor
    counts: torch.Tensor
    selection_counts: torch.Tensor


def certify(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 256,
    seed: int = 0,
) -> Certificate:
    """Certify the smoothed ``model`` on images ``x`` (``B x 3 x H x W``): Cohen et al.'s CERTIFY, batched.

    >>> cert = certify(model, x, sigma=0.25, n0=100, n=1000, alpha=0.001)  # doctest: +SKIP
    >>> cert.radius  # doctest: +SKIP
    """
    _check(sigma, n, alpha, batch_size)
    if n0 < 1:
        raise DfrobustError(f"--n0 must be at least 1, got {n0}")
    gen = noise_generator(model_device(model), seed)
    selection = sample_counts(model, x, sigma, n0, batch_size, gen)
    top = selection.argmax(1)
    counts = sample_counts(model, x, sigma, n, batch_size, gen)
    n_a = counts.gather(1, top[:, None]).squeeze(1).numpy()
    pa_lower = clopper_pearson_lower(n_a, n, alpha)
    certified = pa_lower >= 0.5
    radius = np.where(certified, sigma * stats.norm.ppf(np.clip(pa_lower, 0.5, 1.0)), 0.0)
    prediction = torch.where(torch.from_numpy(certified), top, torch.full_like(top, ABSTAIN))
    return Certificate(prediction, torch.from_numpy(radius), torch.from_numpy(pa_lower), counts, selection)


def smooth_predict(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 256,
    seed: int = 0,
) -> torch.Tensor:
    """The smoothed prediction per image (Cohen et al.'s PREDICT), :data:`ABSTAIN` where the top two classes are not
    told apart by a two-sided binomial test at level ``alpha``; with probability ``1 - alpha`` a returned class is ``g(x)``."""
    _check(sigma, n, alpha, batch_size)
    counts = sample_counts(model, x, sigma, n, batch_size, noise_generator(model_device(model), seed))
    top2 = counts.topk(min(2, counts.shape[1]), dim=1)
    first = top2.values[:, 0].numpy()
    second = top2.values[:, 1].numpy() if counts.shape[1] > 1 else np.zeros_like(first)
    total = first + second
    # the exact two-sided test of p = 1/2 is twice the lower tail of the smaller count (at most 1)
    p_value = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(first, second), total, 0.5))
    top = top2.indices[:, 0]
    return torch.where(torch.from_numpy(p_value <= alpha), top, torch.full_like(top, ABSTAIN))
