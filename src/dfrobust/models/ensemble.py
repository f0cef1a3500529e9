"""An ensemble of detectors as one model: the mean of their logits (Liu et al. 2017; Dong et al. 2018).

Transfer attacks crafted on several surrogate models at once fool unseen models more often
than those crafted on one. Any attack takes a :class:`LogitEnsemble` as its model, so no
attack needs to know about ensembles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.checkpoint import load_detector


class LogitEnsemble(nn.Module):
    """A model whose logits are the weighted mean of its members' logits.

    Args:
        models: the detectors (same input convention: ``N x 3 x H x W`` in ``[0, 1]``, same classes).
        weights: one non-negative weight per model (default: equal); normalised to sum to 1.
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(models) == 0:
            raise DfrobustError("an ensemble needs at least one model")
        if weights is None:
            weights = [1.0] * len(models)
        if len(weights) != len(models):
            raise DfrobustError(f"{len(weights)} ensemble weights for {len(models)} models; give one weight per model")
        w = torch.tensor([float(v) for v in weights])
        if (w < 0).any() or w.sum() <= 0:
            raise DfrobustError(f"ensemble weights must be >= 0 and not all 0, got {list(weights)}")
        self.members = nn.ModuleList(models)
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The weighted mean of the members' logits (``N x classes``)."""
        logits = [m(x) for m in self.members]
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1:
            raise DfrobustError(f"ensemble members return logits of different shapes {sorted(shapes)}; use detectors with the same classes")
        weights = self.weights.to(logits[0].dtype)
        return torch.einsum("m,mnk->nk", weights, torch.stack(logits))

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        device: str | torch.device = "cpu",
        weights: Sequence[float] | None = None,
        expect_input_size: tuple[int, int] | list[int] | None = None,
    ) -> LogitEnsemble:
        """Load detector checkpoints (see :func:`dfrobust.models.checkpoint.load_detector`) into one ensemble."""
        models = [load_detector(p, device=device, expect_input_size=expect_input_size)[0] for p in paths]
        return cls(models, weights).to(device).eval()
