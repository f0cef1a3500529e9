"""Cheap input-transform purifiers, the baselines DIP has to beat: JPEG re-compression and Gaussian blur.

Each is a registered :class:`~dfrobust.defenses.base.Purifier` (deterministic; ``identity`` is
the control). :func:`jpeg_purify`, :func:`blur_purify` and :func:`transform_purifiers` are the
shortcuts the DIP study uses.

>>> x = torch.rand(2, 3, 32, 32)
>>> jpeg_purify(x, quality=75).shape, blur_purify(x, sigma=1.0).shape
(torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
"""

from __future__ import annotations

from typing import Any

import torch

from dfrobust.defenses.base import Purifier, register_purifier
from dfrobust.utils.params import Interval
from dfrobust.utils.imageops import gaussian_blur, jpeg_round_trip


@register_purifier
class Identity(Purifier):
    """Returns the images unchanged: the undefended control."""

    name = "identity"

    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The images themselves."""
        return x


@register_purifier
class Jpeg(Purifier):
    """JPEG re-compression: encode at ``quality`` and decode (8-bit, Pillow's codec).

    Args:
        quality: JPEG quality, 1 (strongest compression) to 100.
    """

    name = "jpeg"
    params = {"quality": Interval(1, 100, integer=True)}

    def __init__(self, quality: int = 75) -> None:
        self.quality = int(quality)

    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The JPEG round trip of every image."""
        return jpeg_round_trip(x, self.quality)


@register_purifier
class Blur(Purifier):
    """Gaussian blur; differentiable, so it is its own BPDA surrogate.

    Args:
        sigma: standard deviation in pixels (the kernel covers +-3 sigma).
    """

    name = "blur"
    params = {"sigma": Interval(0, lo_open=True)}

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = float(sigma)

    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The blurred images."""
        return gaussian_blur(x, self.sigma)

    def surrogate(self, x: torch.Tensor) -> torch.Tensor:
        """The blur itself (it has a gradient)."""
        return gaussian_blur(x, self.sigma)


def jpeg_purify(images: torch.Tensor, **params: Any) -> torch.Tensor:
    """Round-trip images through JPEG (``quality``: see :class:`Jpeg`); float images on the input's device."""
    return Jpeg(**params)(images)


def blur_purify(images: torch.Tensor, **params: Any) -> torch.Tensor:
    """Gaussian-blur images (``sigma`` in pixels: see :class:`Blur`)."""
    return Blur(**params)(images)


def default_blur_sigma(width: int) -> float:
    """A light blur for a ``width``-pixel image: 1 px at 256 px, scaled with the width (at least 0.5 px)."""
    return max(0.5, width / 256.0)


def transform_purifiers(width: int, jpeg_quality: int | None = None, blur_sigma: float | None = None) -> dict[str, Purifier]:
    """The baseline purifiers by name (``jpeg``, ``blur``) for ``width``-pixel images.

    ``jpeg_quality`` defaults to :class:`Jpeg`'s, ``blur_sigma`` to :func:`default_blur_sigma`.
    """
    jpeg = Jpeg() if jpeg_quality is None else Jpeg(jpeg_quality)
    return {"jpeg": jpeg, "blur": Blur(blur_sigma if blur_sigma is not None else default_blur_sigma(width))}
