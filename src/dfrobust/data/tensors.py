"""Images held in memory as a dataset: checked float tensors and their labels in either convention."""

from __future__ import annotations

from typing import Any

import torch

from dfrobust.data.dataset import ImageSet
from dfrobust.errors import DfrobustError
from dfrobust.utils.labels import DFROBUST_LABELS, to_dfrobust_labels


def image_tensors(x: Any, y: Any = None, labels: str = DFROBUST_LABELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Check images held in memory and their labels: float ``N x 3 x H x W`` in ``[0, 1]`` and ``N``
    labels in convention ``labels`` (``"fake=0"``, dfrobust's, or ``"fake=1"``, DeepfakeBench's).

    Returns the images (as given, float) and the labels in dfrobust's convention. Anything else is
    a one-line :class:`DfrobustError` saying what to pass, raised before any image is scored.
    """
    if not isinstance(x, torch.Tensor):
        raise DfrobustError(f"images must be a float tensor N x 3 x H x W in [0, 1], got a {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or not len(x):
        raise DfrobustError(f"images must be a tensor N x 3 x H x W (RGB, N >= 1), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DfrobustError(f"images must be a float tensor in [0, 1], got {x.dtype} (8-bit pixels? pass x.float() / 255)")
    if not bool(torch.isfinite(x).all()):
        raise DfrobustError("images hold NaN or infinite values; pass pixels in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        hint = " (0-255 pixels? divide by 255)" if hi > 1.0 else " (normalised? pass pixels before mean/std; the detector normalises)"
        raise DfrobustError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
    if y is None:
        raise DfrobustError('images given without labels; pass (x, y) with labels="fake=0" (dfrobust\'s) or labels="fake=1"')
    return x, to_dfrobust_labels(y, labels, n=len(x))


def tensor_image_set(x: Any, y: Any = None, labels: str = DFROBUST_LABELS) -> ImageSet:
    """An :class:`ImageSet` of images held in memory (checked by :func:`image_tensors`), stored as 8-bit
    pixels as every :class:`ImageSet` is (rounded to the nearest of 256 levels); ids ``tensor/00000``, ..."""
    x, y = image_tensors(x, y, labels)
    pixels = (x.detach().cpu() * 255.0).round().to(torch.uint8).contiguous()
    return ImageSet(pixels, y.cpu(), [f"tensor/{i:05d}" for i in range(len(x))])
