"""Image operations shared by the data generator, training augmentation, attacks and defenses.

One implementation each: a batched Gaussian blur with a sigma per image, and a JPEG round
trip with a quality per image. Images are tensors ``N x C x H x W``.

>>> x = torch.rand(2, 3, 16, 16)
>>> gaussian_blur(x, torch.tensor([0.0, 1.0])).shape, jpeg_round_trip(x, 75).shape
(torch.Size([2, 3, 16, 16]), torch.Size([2, 3, 16, 16]))
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from dfrobust.utils.io import to_uint8


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel size covering +-3 sigma (at least 3)."""
    return max(3, 2 * math.ceil(3 * sigma) + 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float, kernel_size: int | None = None) -> torch.Tensor:
    """Blur each image of ``x`` with its own Gaussian ``sigma[i]`` (pixels; 0 leaves it as it is), in one grouped convolution.

    Separable, with the kernel and reflect padding of ``torchvision.transforms.functional.gaussian_blur``
    (which takes one sigma per call and convolves with the 2-D outer product, so it rounds
    differently in the last float bit). ``kernel_size`` defaults to cover 3 of the largest
    sigma and is capped to fit the image. Differentiable in ``x``; computed in float32 (float64
    for float64 images) and returned in ``x``'s dtype.
    """
    b, c, h, w = x.shape
    if b == 0:
        return x
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    sigma = torch.as_tensor(sigma, dtype=work, device=x.device).expand(b).clamp(min=1e-3)
    ks = kernel_size or blur_kernel_size(float(sigma.max()))
    ks = min(ks, 2 * (min(h, w) - 1) + 1)  # reflect padding needs pad < size
    half = (ks - 1) * 0.5
    pos = torch.linspace(-half, half, ks, device=x.device, dtype=work)
    kernel = torch.exp(-0.5 * (pos[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C) x ks
    pad = ks // 2
    flat = F.pad(x.reshape(1, b * c, h, w).to(work), (pad, pad, pad, pad), mode="reflect")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, ks), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, ks, 1), groups=b * c)
    return flat.view(b, c, h, w).to(x.dtype)


def jpeg_round_trip(x: torch.Tensor, quality: int | Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Encode each image as JPEG at ``quality`` (one for all, or one per image, 1..100) and decode it.

    ``uint8`` images come back as ``uint8``; float images in ``[0, 1]`` are quantised to 8 bits
    first and come back as float in ``[0, 1]``. The codec is Pillow's, on the CPU, so the pixels
    do not depend on the device; the result goes back to ``x``'s device.
    """
    n = len(x)
    qualities = [int(q) for q in (np.broadcast_to(np.asarray(quality), (n,)) if n else [])]
    if any(not 1 <= q <= 100 for q in qualities):
        raise ValueError(f"JPEG quality must lie in 1..100, got {sorted(set(qualities))}")
    u8 = x if x.dtype == torch.uint8 else to_uint8(x)
    hwc = u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    # JPEG is a per-image codec; the loop is over encoder calls, not pixels
    out = np.stack([_jpeg_uint8(img, q) for img, q in zip(hwc, qualities)]) if n else hwc
    back = torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device)
    return back if x.dtype == torch.uint8 else back.to(x.dtype if x.is_floating_point() else torch.float32) / 255.0


def _jpeg_uint8(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode a ``uint8 H x W x 3`` image as JPEG at ``quality`` and decode it again."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))
