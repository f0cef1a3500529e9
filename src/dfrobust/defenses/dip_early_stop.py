"""ES-WMV early stopping for DIP (Wang et al., "Early stopping for deep image prior"): per image, where the windowed output variance stops falling."""

from __future__ import annotations

import torch

from dfrobust.errors import DfrobustError


class WindowedVarianceStop:
    """ES-WMV (Wang et al., "Early stopping for deep image prior"), for ``B`` images at once.

    Each image keeps its last ``window`` outputs; once the window is full, every
    :meth:`update` computes the windowed moving variance
    ``VAR_t = 1/W sum_w mean_pixels((x_{t-w} - mean_window)^2)``. The output at the iteration
    of the smallest variance so far is kept; an image stops when its variance has not reached
    a new minimum for ``patience`` consecutive iterations, and its kept output, minimum and
    counters freeze from then on. Images are independent: an image's stop does not depend on
    its batch. The state lives on the outputs' device and an update never waits for it (no
    host synchronisation); reading :attr:`stopped` does.

    Memory: a ring buffer of ``B x window`` outputs (window 100 at 256 px: 79 MB per image in float32).

    >>> es = WindowedVarianceStop(1, window=2, patience=1)
    >>> for t, v in enumerate([0.0, 1.0, 1.0, 5.0], 1):
    ...     es.update(torch.full((1, 1, 1, 1), v), t)
    >>> es.best_t.tolist(), es.stopped_at.tolist()
    ([3], [4])
    """

    def __init__(self, batch: int, window: int, patience: int) -> None:
        if window < 2 or patience < 1:
            raise DfrobustError(f"ES-WMV needs a window >= 2 and a patience >= 1, got {window} and {patience}")
        self.batch, self.window, self.patience = int(batch), int(window), int(patience)
        self.count = 0  #: outputs seen
        self.buffer: torch.Tensor | None = None  #: B x window x ... ring buffer of the last outputs
        self.output: torch.Tensor | None = None  #: B x ... outputs at ``best_t``
        self.best = torch.full((batch,), float("inf"), dtype=torch.float64)  #: smallest variance so far
        self.best_t = torch.zeros(batch, dtype=torch.long)  #: its iteration (0: none yet)
        self.wait = torch.zeros(batch, dtype=torch.long)  #: iterations since the last new minimum
        self.stopped_at = torch.zeros(batch, dtype=torch.long)  #: iteration the patience ran out (0: running)

    @property
    def stopped(self) -> torch.Tensor:
        """``B`` bools: which images have stopped."""
        return self.stopped_at > 0

    @torch.no_grad()
    def update(self, out: torch.Tensor, t: int) -> None:
        """Add the outputs ``out`` (``B x ...``) of iteration ``t``."""
        out = out.detach()
        if self.buffer is None:
            self.buffer = out.new_zeros((len(out), self.window, *out.shape[1:]))
            self.output = out.clone()
            dev = out.device
            self.best, self.best_t, self.wait, self.stopped_at = (v.to(dev) for v in (self.best, self.best_t, self.wait, self.stopped_at))
        self.buffer[:, self.count % self.window] = out
        self.count += 1
        if self.count < self.window:
            return
        buf = self.buffer.flatten(2)
        var = (buf - buf.mean(1, keepdim=True)).pow(2).mean((1, 2)).double()
        running = self.stopped_at == 0
        better = running & (var < self.best)
        self.best = torch.where(better, var, self.best)
        self.best_t = torch.where(better, t, self.best_t)
        self.wait = torch.where(better, 0, self.wait + running.long())
        self.output = torch.where(better.view(-1, *([1] * (out.ndim - 1))), out, self.output)
        self.stopped_at = torch.where(running & (self.wait >= self.patience), t, self.stopped_at)

    def result(self, last: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(iterations, outputs)`` kept per image (on the CPU, iterations as long).

        An image whose window never filled keeps ``last`` (the outputs of iteration ``t``).
        """
        if self.output is None:  # nothing was run
            return torch.full((len(last),), t, dtype=torch.long), last.cpu()
        none = self.best_t == 0
        its = torch.where(none, t, self.best_t)
        outs = torch.where(none.view(-1, *([1] * (last.ndim - 1))), last, self.output)
        return its.cpu(), outs.cpu()


#: With early stopping, iterations between checks whether every image of a batch has stopped
#: (a check waits for the device); a batch runs at most this many iterations past its last stop.
ES_CHECK_EVERY = 10
