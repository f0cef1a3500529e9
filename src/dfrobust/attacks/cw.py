"""Carlini-Wagner L2 (Carlini & Wagner 2017) as the paper runs it, batched with a per-image search of c.

For each image the attack minimises ``||x' - x||^2 + c * f(x')`` over ``w`` with
``x' = (tanh(w) + 1) / 2`` and ``f(x') = max(Z_y - max_{i != y} Z_i, -kappa)``, with Adam.
The constant ``c`` is searched per image (a tensor, not a loop), with Carlini's rule kept
inside the given range:

* success (the logit margin reached ``kappa`` at some step): the upper bound drops to ``c``, bisect;
* failure: the lower bound rises to ``c``; bisect when an upper bound is known, else ``c * 10``;
* ``c`` is clipped to ``c_range``; an image whose next ``c`` equals its last one has converged and
  stops searching (the optimisation would repeat exactly).

Adam state and perturbation restart at every search step. Early abort is per image: every
``max_steps // 10`` steps an image whose loss has not improved by 0.01% leaves the batch, and
the batch stops when no image is left. Across all steps, the lowest-L2 image that reached the
``kappa`` margin is kept. For an image that never reached it, ``unreached`` decides:
``"min-l2"`` returns its lowest-L2 misclassified image if it had one (``success`` true,
``kappa_reached`` false), ``"max-margin"`` its highest-margin image (the attempt closest to
the ``kappa`` goal; larger, but confident, perturbations); with neither, its closest attempt,
reported as failed. An image is never returned clean and counted as a success.

Differences from the authors' code, on purpose: per-search-step Adam restart,
c never leaves ``c_range``, abort checked per image, no silent clean image on failure.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from torch import nn

from dfrobust.attacks.base import Attack, logit_margin, register_attack
from dfrobust.utils.params import Boolean, Interval, Pair, StrOptions
from dfrobust.utils.runtime import progress

#: Relative loss improvement an image must make between two abort checks to keep going.
ABORT_TOLERANCE = 1e-4
#: What an image that never reaches the kappa margin returns (see the module docstring).
Unreached = Literal["min-l2", "max-margin"]
UNREACHED: tuple[str, ...] = get_args(Unreached)


class _Keeper:
    """Per-image best candidate under a score (lower is better), with the ``c`` that found it."""

    def __init__(self, x: torch.Tensor) -> None:
        n = len(x)
        self.score = torch.full((n,), math.inf, device=x.device)
        self.images = x.clone()
        self.c = torch.full((n,), math.nan, device=x.device)

    def offer(self, rows: torch.Tensor, mask: torch.Tensor, score: torch.Tensor, images: torch.Tensor, c: torch.Tensor) -> None:
        """Keep ``images[i]`` for image ``rows[i]`` where ``mask[i]`` and its score beats the kept one."""
        better = mask & (score < self.score[rows])
        if better.any():
            g = rows[better]
            self.score[g] = score[better]
            self.images[g] = images[better]
            self.c[g] = c[better]

    @property
    def found(self) -> torch.Tensor:
        return torch.isfinite(self.score)


def _to_w(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(tanh(w) + 1) / 2``; the factor keeps ``atanh`` finite at 0 and 1."""
    return torch.atanh((2 * x - 1) * (1 - 1e-6))


def _from_w(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) + 1) / 2


@register_attack(labels={"cw": "CW-L2"}, order=1, paper=True, norm="l2")
class CarliniWagnerL2(Attack):
    """Untargeted CW-L2 with a batched per-image binary search of ``c``.

    Args:
        kappa: logit margin the attack aims for (the paper: 200).
        c_range: ``(lowest, highest)`` c searched; the search starts at the lowest (the paper: 1e2, 1e4).
        search_steps: binary-search steps (the paper: 5).
        max_steps: Adam steps per search step at most (the paper: 1,000).
        lr: Adam learning rate (the paper: 0.01).
        abort_early: stop an image's optimisation when its loss stops improving.
        unreached: what an image that never reaches ``kappa`` returns: ``"min-l2"`` (its
            lowest-L2 misclassified image) or ``"max-margin"`` (its highest-margin image).

    Extras in the result (per image): ``c`` (the constant that found the returned image),
    ``c_lo``/``c_hi`` (final search bounds, ``c_hi`` NaN while unknown), ``c_tried``
    (``N x search_steps``, NaN where the search had converged), ``kappa_reached``, ``margin``
    (``max_{i != y} Z_i - Z_y`` of the returned image), ``adam_steps`` (total steps run).
    """

    name = "cw"
    params = {
        "kappa": Interval(0),
        "c_range": Pair(0.0, lo_open=True),
        "search_steps": Interval(1, integer=True),
        "max_steps": Interval(1, integer=True),
        "lr": Interval(0, lo_open=True),
        "abort_early": Boolean(),
        "unreached": StrOptions(*UNREACHED),
    }

    def __init__(
        self,
        kappa: float = 200.0,
        c_range: tuple[float, float] = (1e2, 1e4),
        search_steps: int = 5,
        max_steps: int = 1000,
        lr: float = 0.01,
        abort_early: bool = True,
        unreached: Unreached = "min-l2",
    ) -> None:
        lo, hi = (float(v) for v in c_range)
        self.kappa = float(kappa)
        self.c_range = (lo, hi)
        self.search_steps = int(search_steps)
        self.max_steps = int(max_steps)
        self.lr = float(lr)
        self.abort_early = bool(abort_early)
        self.unreached = unreached

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Binary search over ``c`` (per image), each step a full Adam optimisation."""
        n, dev = len(x), x.device
        c_min, c_max = self.c_range
        c = torch.full((n,), c_min, device=dev)
        lo = torch.full((n,), c_min, device=dev)
        hi = torch.full((n,), math.inf, device=dev)
        c_tried = torch.full((n, self.search_steps), math.nan, device=dev)
        adam_steps = torch.zeros(n, dtype=torch.long, device=dev)
        w0 = _to_w(x)
        # lowest L2 reaching kappa; lowest L2 misclassified; highest margin (for failures)
        keep_kappa, keep_mis, keep_any = _Keeper(x), _Keeper(x), _Keeper(x)
        searching = torch.ones(n, dtype=torch.bool, device=dev)
        bar = progress(total=self.search_steps * self.max_steps, desc="CW-L2", unit="step")
        for step in range(self.search_steps):
            idx = searching.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            c_tried[idx, step] = c[idx]
            reached = self._optimise(model, x, y, w0, c, idx, (keep_kappa, keep_mis, keep_any), adam_steps, bar)
            succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
            succeeded[idx] = reached
            failed = searching & ~succeeded
            hi = torch.where(succeeded, torch.minimum(hi, c), hi)
            lo = torch.where(failed, torch.maximum(lo, c), lo)
            new_c = torch.where(torch.isfinite(hi), (lo + hi) / 2, c * 10).clamp(c_min, c_max)
            converged = torch.isclose(new_c, c, rtol=1e-9, atol=0.0)
            c = torch.where(searching, new_c, c)
            searching &= ~converged
            bar.set_postfix(kappa_reached=f"{int(keep_kappa.found.sum())}/{n}", searching=int(searching.sum()))
        bar.close()

        use_kappa = keep_kappa.found
        use_mis = ~use_kappa & keep_mis.found & (self.unreached == "min-l2")
        x_adv = _choose(use_kappa, use_mis, keep_kappa.images, keep_mis.images, keep_any.images)
        chosen_c = _choose(use_kappa, use_mis, keep_kappa.c, keep_mis.c, keep_any.c)
        with torch.no_grad():
            margin = logit_margin(model(x_adv), y)
        extras = {
            "c": chosen_c,
            "c_lo": lo,
            "c_hi": torch.where(torch.isfinite(hi), hi, torch.full_like(hi, math.nan)),
            "c_tried": c_tried,
            "kappa_reached": use_kappa,
            "margin": margin,
            "adam_steps": adam_steps,
        }
        return x_adv, extras

    def _optimise(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        w0: torch.Tensor,
        c: torch.Tensor,
        idx: torch.Tensor,
        keepers: tuple[_Keeper, _Keeper, _Keeper],
        adam_steps: torch.Tensor,
        bar: Any,
    ) -> torch.Tensor:
        """One search step for images ``idx``: Adam from scratch; returns whether each reached kappa."""
        keep_kappa, keep_mis, keep_any = keepers
        rows = idx.clone()  # global index of each row still being optimised
        x_r, y_r, c_r = x[rows], y[rows], c[rows]
        reached_r = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
        prev = torch.full((len(rows),), math.inf, device=x.device)
        reached = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        w = w0[rows].clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        check_every = max(1, self.max_steps // 10)
        steps = 0
        for it in range(self.max_steps):
            bar.update()
            x_adv = _from_w(w)
            margin = logit_margin(model(x_adv), y_r)
            l2sq = (x_adv - x_r).flatten(1).pow(2).sum(1)
            loss = l2sq + c_r * (-margin).clamp(min=-self.kappa)
            (grad,) = torch.autograd.grad(loss.sum(), w)
            steps = it + 1
            with torch.no_grad():
                ok = margin >= self.kappa
                reached_r |= ok
                keep_kappa.offer(rows, ok, l2sq, x_adv, c_r)
                keep_mis.offer(rows, margin > 0, l2sq, x_adv, c_r)
                keep_any.offer(rows, torch.ones_like(ok), -margin, x_adv, c_r)
                if self.abort_early and it % check_every == 0:
                    # sign-safe form of Carlini's `loss > prev * 0.9999` (losses go negative here)
                    stalled = loss > prev - ABORT_TOLERANCE * prev.abs()
                    prev = loss
                    if stalled.any():
                        gone = rows[stalled]
                        adam_steps[gone] += steps
                        reached[gone] = reached_r[stalled]
                        keep = ~stalled
                        rows, x_r, y_r, c_r, reached_r, prev, grad = (t[keep] for t in (rows, x_r, y_r, c_r, reached_r, prev, grad))
                        if len(rows) == 0:
                            bar.update(self.max_steps - steps)
                            break
                        w, opt = _compact_adam(opt, w, keep, self.lr)
            w.grad = grad
            opt.step()
        adam_steps[rows] += steps
        reached[rows] = reached_r
        return reached[idx]


def _choose(use_a: torch.Tensor, use_b: torch.Tensor, a: torch.Tensor, b: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per image: ``a`` where ``use_a``, else ``b`` where ``use_b``, else ``other``."""
    shape = (-1, *([1] * (a.ndim - 1)))
    return torch.where(use_a.view(shape), a, torch.where(use_b.view(shape), b, other))


def _compact_adam(opt: torch.optim.Adam, w: torch.Tensor, keep: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.optim.Adam]:
    """Drop the rows of ``w`` (and of Adam's moment estimates) where ``keep`` is false.

    Adam is element-wise, so slicing its state keeps every remaining image's optimisation
    exactly as it was; the batch shrinks and the remaining steps cost less.
    """
    state = opt.state[w]
    w_new = w.detach()[keep].clone().requires_grad_(True)
    new = torch.optim.Adam([w_new], lr=lr)
    if state:
        new.state[w_new] = {k: (v[keep].clone() if v.ndim > 0 else v.clone()) for k, v in state.items()}
    return w_new, new
