"""Training-time augmentation on batches: horizontal flips and the paper's Gaussian blur.

Everything works on a whole batch at once (float ``B x 3 x H x W`` in ``[0, 1]``), on the
batch's device, with the random draws taken from a CPU generator so a seed gives the same
augmentation on CPU and GPU.

Blur: the paper blurred about 40% of the training images with ``sigma ~ U[3, 5]`` on
300-px-wide images; at another width the sigma range is scaled by ``width / 300`` so that the
blur covers the same fraction of the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dfrobust.errors import DfrobustError
from dfrobust.utils.imageops import gaussian_blur

#: Image width at which the paper's blur sigmas are given (its inputs were 368 x 300).
PAPER_WIDTH = 300


def scaled_sigma(sigma: tuple[float, float], width: int, reference_width: int = PAPER_WIDTH) -> tuple[float, float]:
    """The sigma range ``sigma`` (given at ``reference_width`` pixels) for images ``width`` pixels wide."""
    factor = width / reference_width
    return float(sigma[0]) * factor, float(sigma[1]) * factor


@dataclass
class Augment:
    """Batch augmentation of the training loop.

    Attributes:
        hflip: flip each image left-right with probability 1/2 (the paper's only default).
        blur_fraction: probability that an image is blurred (the paper's blur model: 0.4).
        blur_sigma: sigma range in pixels of the images being augmented (already scaled; see
            :func:`scaled_sigma`).
    """

    hflip: bool = True
    blur_fraction: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.blur_fraction <= 1.0:
            raise DfrobustError(f"--blur-fraction must lie in [0, 1], got {self.blur_fraction}")
        lo, hi = self.blur_sigma
        if self.blur_fraction > 0 and not 0 < lo <= hi:
            raise DfrobustError(f"--blur-sigma wants 0 < LO <= HI, got {lo} {hi}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch; the draws come from ``generator`` (CPU), so results are seeded."""
        n = len(x)
        if self.blur_fraction > 0:
            chosen = torch.rand(n, generator=generator) < self.blur_fraction
            lo, hi = self.blur_sigma
            sigma = lo + (hi - lo) * torch.rand(n, generator=generator)
            if chosen.any():
                idx = chosen.nonzero().squeeze(1).to(x.device)
                x = x.index_copy(0, idx, gaussian_blur(x[idx], sigma[chosen]))
        if self.hflip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x
