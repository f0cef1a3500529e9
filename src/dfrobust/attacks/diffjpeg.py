"""A differentiable JPEG approximation: the backward stand-in of the ``jpeg`` step of a platform chain.

JPEG's rounding of quantised DCT coefficients has a zero gradient almost everywhere, so attacks
use a stand-in on the backward pass. The identity (straight-through) ignores what JPEG removes;
this stand-in follows the codec (Shin and Song, "JPEG-resistant adversarial images", 2017):
RGB -> YCbCr, 4:2:0 chroma subsampling (Pillow's default), 8x8 block DCT, division by the
standard (libjpeg) quantisation tables scaled to the quality, a rounding whose gradient is not
zero (``round(x) + (x - round(x))^3``), and the way back. Its gradient tells an attack which
frequencies survive at that quality.

>>> x = torch.rand(2, 3, 20, 20, requires_grad=True)
>>> y = diff_jpeg(x, torch.tensor([50.0, 90.0]))
>>> y.shape, bool(torch.autograd.grad(y.sum(), x)[0].abs().sum() > 0)
(torch.Size([2, 3, 20, 20]), True)
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
           47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32  # fmt: skip


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix ``D`` (``D @ block @ D.T`` is the 2-D DCT)."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device, dtype)


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's luma and chroma tables scaled to each quality (``N x 8 x 8`` each, at least 1)."""
    q = quality.double().clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    tables = []
    for base in (_LUMA, _CHROMA):
        t = torch.tensor(base, dtype=torch.float64).view(1, 8, 8)
        tables.append(torch.floor((t * scale + 50) / 100).clamp(1, 255))
    return tables[0], tables[1]


def soft_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x) + (x - round(x))^3``: rounds approximately, with a non-zero gradient."""
    r = torch.round(x)
    return r + (x - r) ** 3


def _blocks_codec(plane: torch.Tensor, table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """One channel ``N x H x W`` (H, W multiples of 8, values centred on 0): DCT, quantise, soft-round, back."""
    n, h, w = plane.shape
    blocks = plane.view(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # N x bh x bw x 8 x 8
    coeff = d @ blocks @ d.T
    t = table.to(plane.dtype)[:, None, None]
    coeff = soft_round(coeff / t) * t
    back = d.T @ coeff @ d
    return back.permute(0, 1, 3, 2, 4).reshape(n, h, w)


def diff_jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """The JPEG approximation of images ``x`` (``N x 3 x H x W`` in [0, 1]) at one quality per image; differentiable."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16  # whole 16 x 16 macroblocks (8 x 8 blocks of the subsampled chroma)
    v = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    d = _dct_matrix(x.dtype, x.device)
    luma, chroma = (t.to(x.device) for t in quant_tables(quality.to(x.device)))
    y = _blocks_codec(y - 128, luma, d) + 128
    chans = []
    for c in (cb, cr):
        small = F.avg_pool2d(c[:, None], 2)[:, 0]
        small = _blocks_codec(small, chroma, d)
        chans.append(F.interpolate(small[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0])
    cb, cr = chans
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1) / 255
    return rgb[..., :h, :w]
