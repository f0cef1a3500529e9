"""Cheap input-transform purifiers, the baselines DIP has to beat: JPEG re-compression and Gaussian blur.

Every purifier has the same call shape as :func:`dfrobust.defenses.dip.dip_purify`: float
images ``N x 3 x H x W`` in ``[0, 1]`` in, purified images of the same shape out.

>>> x = torch.rand(2, 3, 32, 32)
>>> jpeg_purify(x, quality=75).shape, blur_purify(x, sigma=1.0).shape
(torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.functional import gaussian_blur

from dfrobust.errors import DfrobustError
from dfrobust.utils.io import to_uint8

Purifier = Callable[[torch.Tensor], torch.Tensor]


def jpeg_purify(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Round-trip images through JPEG at ``quality`` (1-100); returns float images on the input's device.

    torchvision encodes a list of images in one call (on the GPU when the images are there).
    """
    if not 1 <= quality <= 100:
        raise DfrobustError(f"JPEG quality must lie in 1..100, got {quality}")
    as_uint8 = list(to_uint8(images))
    with warnings.catch_warnings():
        # torchvision 0.29 announces a move of its codecs to torchcodec; they still work
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(as_uint8, quality=quality))
    return torch.stack(decoded).to(images.device, images.dtype) / 255.0


def blur_purify(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian-blur images with standard deviation ``sigma`` pixels (kernel covers +-3 sigma)."""
    if sigma <= 0:
        raise DfrobustError(f"blur sigma must be positive, got {sigma}")
    kernel = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def default_blur_sigma(width: int) -> float:
    """A light blur for a ``width``-pixel image: 1 px at 256 px, scaled with the width (at least 0.5 px)."""
    return max(0.5, width / 256.0)


def transform_purifiers(width: int, jpeg_quality: int = 75, blur_sigma: float | None = None) -> dict[str, Purifier]:
    """The baseline purifiers by name (``jpeg``, ``blur``) with their parameters fixed."""
    sigma = blur_sigma if blur_sigma is not None else default_blur_sigma(width)
    return {
        "jpeg": lambda x: jpeg_purify(x, jpeg_quality),
        "blur": lambda x: blur_purify(x, sigma),
    }
