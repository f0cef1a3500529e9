"""Per-image quality of a changed image against a reference: MSE, PSNR, SSIM (images in ``[0, 1]``).

>>> a = torch.zeros(2, 3, 8, 8); b = a + 0.1
>>> psnr(a, b)
tensor([20., 20.])
"""

from __future__ import annotations

import numpy as np
import torch


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of ``N x ...`` batches (computed in float32 or wider)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in ``[0, 1]`` from their MSE (peak 1); ``inf`` for an exact match."""
    return 10.0 * torch.log10(1.0 / mse.clamp_min(0.0))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``a`` against ``b`` (``inf`` for identical images)."""
    return psnr_from_mse(mse(a, b))


def ssim(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per-image SSIM (scikit-image, channels averaged) of ``N x 3 x H x W`` images in ``[0, 1]``."""
    from skimage.metrics import structural_similarity  # imported when used: it is slow to load

    x, y = a.detach().cpu().numpy().astype(np.float64), b.detach().cpu().numpy().astype(np.float64)
    return [float(structural_similarity(p, q, channel_axis=0, data_range=1.0)) for p, q in zip(x, y)]
