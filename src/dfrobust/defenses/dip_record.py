"""What a DIP run records: the trajectory of one batch (:class:`DipTrajectory`) and the samples it is built from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dfrobust.evaluate.image_metrics import mse, psnr_from_mse
from dfrobust.models.inference import p_real


@dataclass
class DipTrajectory:
    """What one batch's optimisation recorded.

    Attributes:
        iterations: the recorded iterations (1-based: iteration ``t`` is the ``t``-th forward
            pass, made with the parameters after ``t - 1`` Adam steps).
        p_real_raw, p_real_avg: ``B x R`` classifier P(real) of the output and of the exponential
            average of outputs (empty ``B x 0`` when no classifier was given).
        mse_input, psnr_input: ``B x R`` MSE and PSNR (dB, peak 1) of the output to the input.
        psnr_clean: ``B x R`` PSNR of the output to the clean image, or ``None``.
        snapshots: iteration -> ``B x 3 x H x W`` outputs kept at the requested iterations.
        final, final_avg: output and exponential average at the last iteration run.
        seconds: wall time of the optimisation loop.
        steps: iterations run (fewer than asked when early stopping stopped every image: the
            batch ends at the first multiple of ``ES_CHECK_EVERY`` after its last stop).
        es_iteration: with ``cfg.early_stop``, ``B`` (long) iterations whose outputs are kept
            in ``es_output``: each image's minimum of the windowed variance (its detected
            stopping point), or the last iteration run when the window never filled.
        es_stopped_at: with ``cfg.early_stop``, ``B`` (long) iterations where each image's
            patience ran out (0: it did not, within the iterations run).
        es_output: with ``cfg.early_stop``, ``B x 3 x H x W`` outputs at ``es_iteration``.
        es_p_real, es_psnr_clean: with ``cfg.early_stop``, ``B`` P(real) of ``es_output`` (when a
            classifier was given) and its PSNR to the clean image (when known).
    """

    iterations: list[int]
    p_real_raw: torch.Tensor
    p_real_avg: torch.Tensor
    mse_input: torch.Tensor
    psnr_input: torch.Tensor
    psnr_clean: torch.Tensor | None
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    final: torch.Tensor | None = None
    final_avg: torch.Tensor | None = None
    seconds: float = 0.0
    steps: int = 0
    es_iteration: torch.Tensor | None = None
    es_stopped_at: torch.Tensor | None = None
    es_output: torch.Tensor | None = None
    es_p_real: torch.Tensor | None = None
    es_psnr_clean: torch.Tensor | None = None

    def index(self, iteration: int) -> int:
        """Position of ``iteration`` among the recorded iterations (KeyError if not recorded)."""
        try:
            return self.iterations.index(iteration)
        except ValueError:
            raise KeyError(f"iteration {iteration} was not recorded") from None


def recorded_iterations(end: int, every: int, extra: Sequence[int] = ()) -> list[int]:
    """Iterations to record: multiples of ``every`` up to ``end``, plus ``extra`` (those <= ``end``)."""
    return sorted(set(range(every, end + 1, every)) | {int(t) for t in extra if 1 <= t <= end})


@torch.no_grad()
def record_sample(
    rows: dict[str, list[torch.Tensor]],
    out: torch.Tensor,
    avg: torch.Tensor,
    x: torch.Tensor,
    clean: torch.Tensor | None,
    classifier: nn.Module | None,
) -> None:
    """Append one recorded sample to ``rows`` (lists under ``raw``, ``avg``, ``mse``, ``psnr_clean``).

    ``raw``/``avg``: the classifier's P(real) of the output and of the running average (when a
    classifier is given); ``mse``: MSE to the input ``x``; ``psnr_clean``: PSNR to ``clean``.
    """
    if classifier is not None:
        scores = p_real(classifier, torch.cat([out, avg]), batch_size=2 * len(out))
        rows["raw"].append(scores[: len(out)])
        rows["avg"].append(scores[len(out) :])
    rows["mse"].append(mse(out, x).cpu())
    if clean is not None:
        rows["psnr_clean"].append(psnr_from_mse(mse(out, clean)).cpu())
