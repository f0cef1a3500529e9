"""Photo-level processing shared by real and fake images.

Two stages, as in a real deepfake pipeline: :func:`capture` happens in the camera, before any
face swap (exposure, white balance, sensor noise), so a swapped face carries its own photo's
look; :func:`finish` happens to the published image, after the swap, identically for reals and
fakes (slight defocus, JPEG compression at a random quality, 8-bit quantisation).
"""

from __future__ import annotations

import numpy as np
import torch

from dfrobust.utils.imageops import gaussian_blur, jpeg_round_trip
from dfrobust.utils.io import to_uint8

Params = dict[str, np.ndarray]


def sample_capture(rng: np.random.Generator, n: int, noise: tuple[float, float] = (0.003, 0.015)) -> Params:
    """Per-photo camera settings: exposure, white balance gains and sensor noise level."""
    return {
        "exposure": rng.uniform(0.85, 1.12, n).astype(np.float32),
        "white_balance": np.clip(rng.normal(1, 0.04, (n, 3)), 0.85, 1.15).astype(np.float32),
        "noise": rng.uniform(*noise, n).astype(np.float32),
    }


def sample_finish(rng: np.random.Generator, n: int, jpeg: tuple[int, int] = (70, 95), blur_p: float = 0.15) -> Params:
    """Per-image publication settings: slight defocus blur sigma (pixels, mostly 0) and JPEG quality."""
    blur = np.where(rng.random(n) < blur_p, rng.uniform(0.3, 0.6, n), 0.0)
    return {"blur": blur.astype(np.float32), "jpeg": rng.integers(jpeg[0], jpeg[1] + 1, n).astype(np.int64)}


def capture(images: np.ndarray, params: Params, rng: np.random.Generator) -> np.ndarray:
    """Apply exposure, white balance and sensor noise to float images ``N x H x W x 3``."""
    gain = (params["exposure"][:, None] * params["white_balance"])[:, None, None, :]
    noise = rng.standard_normal(images.shape, np.float32)
    noise += 0.5 * rng.standard_normal(images.shape[:3] + (1,), np.float32)  # luminance part
    noise *= params["noise"][:, None, None, None]
    return np.clip(images * gain + noise, 0, 1)


def finish(images: np.ndarray, params: Params) -> np.ndarray:
    """Blur (per image), quantise and JPEG-compress float images ``N x H x W x 3``; returns ``uint8``."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    x = gaussian_blur(x, torch.from_numpy(params["blur"]))
    return jpeg_round_trip(to_uint8(x), params["jpeg"]).permute(0, 2, 3, 1).numpy()
