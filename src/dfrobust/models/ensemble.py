"""An ensemble of detectors as one model: the mean of their logits (Liu et al. 2017; Dong et al. 2018).

Transfer attacks crafted on several surrogate models at once fool unseen models more often
than those crafted on one. Any attack takes a :class:`LogitEnsemble` as its model, so no
attack needs to know about ensembles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.loading import load_model_arg


def ensemble_name(members: Sequence[str]) -> str:
    """The default name of an ensemble in result tables: ``ensemble(a+b)``."""
    return f"ensemble({'+'.join(members)})"


def check_input_sizes(sizes: Mapping[str, tuple[int, int] | None]) -> None:
    """A one-line error when members need different input sizes (``None``: the member resizes inside, any size)."""
    fixed = {name: size for name, size in sizes.items() if size is not None}
    if len(set(fixed.values())) > 1:
        listed = ", ".join(f"{n} {h}x{w}" for n, (h, w) in fixed.items())
        raise DfrobustError(f"ensemble members take different input sizes ({listed}); ensemble detectors trained at one size, or use cards")


def check_output_shapes(models: Mapping[str, nn.Module], probe: torch.Tensor) -> None:
    """A one-line error when members return logits of different shapes on ``probe`` (one forward each, no gradient)."""
    with torch.no_grad():
        shapes = {name: tuple(m(probe).shape[1:]) for name, m in models.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        raise DfrobustError(f"ensemble members return outputs of different shapes ({listed}); ensemble detectors with the same classes")


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
        """Load checkpoints or detector cards (see :func:`dfrobust.models.loading.load_model_arg`) into one ensemble."""
        models = [load_model_arg(p, device=device, expect_input_size=expect_input_size)[0] for p in paths]
        return cls(models, weights).to(device).eval()
