"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): PGD whose step size adapts per image, Linf or L2.

Each image keeps its own step size (starting at ``2 * eps``), best loss, best point and the
gradient there. Steps use momentum: the next point moves ``alpha`` of the way towards the
projected gradient step and ``1 - alpha`` along the previous step (``alpha = 1`` on the first
step). At checkpoints ``w_j`` (the paper's ``p_j`` schedule: ``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, times ``steps``) an image halves its step
size and restarts from its best point when

1. at most a share ``rho`` of its steps since the last checkpoint increased the loss, or
2. its step size was not reduced at the last checkpoint and its best loss has not improved since.

Further restarts (``restarts > 1``) attack again, from a new random start, only the images no
restart has fooled yet.

Returned per image: the highest-loss iterate among those the model misclassifies if any
iterate was misclassified (a confident adversarial survives 8-bit quantisation better than the
first one across the boundary), else the highest-loss iterate. Every image runs the full budget,
as in AutoAttack, unless ``stop_margin`` is set: then an image whose margin for a wrong class
exceeds it, and whose 8-bit rounding is misclassified too, stops at that iterate (which it
returns) and the remaining steps run on the other images only (:mod:`dfrobust.attacks.early_stop`).
The images still stepping follow the same trajectory as without stopping: every quantity of
the schedule is per image.

Differences from ``autopgd_base.py``, on purpose: condition 1 counts the first step of a
window against the loss before it (the reference reads a stale row at the first checkpoint);
after a restart from the best point the next step is compared with that point's loss; the DLR
loss with fewer than 3 classes is refused up front (the reference indexes a missing third
logit); the random start comes from the attack's own seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from dfrobust.attacks.base import Attack, budget_value, logit_margin, per_image, project_ball, register_attack
from dfrobust.attacks.early_stop import STOP_MARGIN, StopsEarly, fooled_for_good
from dfrobust.errors import DfrobustError
from dfrobust.constants import PAPER_EPS
from dfrobust.utils.params import Budget, Interval, StrOptions
from dfrobust.utils.runtime import progress

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin", "dlr")
#: Radius used when ``eps`` is not given: the paper's FGSM budget for Linf, AutoAttack's usual L2 budget.
DEFAULT_EPS = {"linf": PAPER_EPS, "l2": 0.5}


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio per row: ``-(z_y - max_{i != y} z_i) / (z_(1) - z_(3))`` (sorted descending)."""
    top = logits.sort(dim=1, descending=True).values
    return logit_margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def checkpoint_lengths(steps: int) -> tuple[int, int, int]:
    """``(first window, shortest window, shrink per checkpoint)`` in iterations (AutoAttack's rounding)."""
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


@register_attack
class APGD(StopsEarly, Attack):
    """Untargeted APGD with per-image step sizes, momentum and checkpoints, in the Linf or L2 ball.

    Args:
        eps: radius of the ball (default 0.02 for ``linf``, the paper's FGSM budget, about 5/255;
            0.5 for ``l2``).
        norm: ``linf`` or ``l2``.
        steps: iterations per restart (Croce & Hein: 100).
        restarts: random restarts; each later one attacks only the images not yet fooled (1).
        loss: ``ce`` (cross-entropy, APGD-CE), ``margin`` (CW loss: ``max_{i != y} z_i - z_y``)
            or ``dlr`` (difference of logits ratio; needs 3 or more classes, so not for
            2-class detectors).
        rho: step-size halving threshold: halve when at most this share of the steps since the
            last checkpoint raised the loss (0.75).
        alpha: momentum weight: each step goes ``alpha`` of the way to the projected gradient
            step plus ``1 - alpha`` of the previous step (0.75; 1.0 means no momentum).
        seed: seed of the random starts.
        stop_margin: stop iterating on an image once its logit margin for a wrong class exceeds this and
            its 8-bit rounding is misclassified too (it returns that iterate); the remaining steps run on
            the other images only. Not given (the default): every image runs every step, as in AutoAttack.

    Extras in the result (per image): ``loss`` (the attack loss of the returned image),
    ``margin`` (``max_{i != y} Z_i - Z_y`` of the returned image, positive when fooled),
    ``grad_steps`` (the gradient evaluations spent on the image, over all restarts).
    """

    name = "apgd"
    params = {
        "eps": Budget(norm_param="norm", optional=True),
        "norm": StrOptions(*NORMS),
        "steps": Interval(1, integer=True),
        "restarts": Interval(1, integer=True),
        "loss": StrOptions(*LOSSES),
        "rho": Interval(0, 1, lo_open=True),
        "alpha": Interval(0, 1, lo_open=True),
        "stop_margin": STOP_MARGIN,
    }

    def __init__(
        self,
        eps: float | None = None,
        norm: Literal["linf", "l2"] = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: Literal["ce", "margin", "dlr"] = "ce",
        rho: float = 0.75,
        alpha: float = 0.75,
        seed: int = 0,
        stop_margin: float | None = None,
    ) -> None:
        self.eps = budget_value(DEFAULT_EPS[norm] if eps is None else eps, norm)
        self.norm = norm
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.loss = loss
        self.rho = float(rho)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.stop_margin = None if stop_margin is None else float(stop_margin)

    @property
    def label(self) -> str:
        """``apgd-ce-linf``, ``apgd-margin-l2`` ..."""
        return f"apgd-{self.loss}-{self.norm}"

    # ----------------------------------------------------------------------------------------
    # geometry
    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit norm: the sign (Linf) or the L2-normalised gradient."""
        if self.norm == "linf":
            return grad.sign()
        return grad / per_image(grad.flatten(1).norm(dim=1).clamp_min(1e-12))

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return project_ball(x_adv, x, self.eps, self.norm)

    def _start(self, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        """A random perturbation on the ball's boundary (drawn on the CPU: the same on any device)."""
        t = torch.rand(shape, generator=gen) * 2 - 1 if self.norm == "linf" else torch.randn(shape, generator=gen)
        scale = t.flatten(1).abs().amax(dim=1) if self.norm == "linf" else t.flatten(1).norm(dim=1)
        return self.eps * t / per_image(scale.clamp_min(1e-12))

    # ----------------------------------------------------------------------------------------
    # loss
    def _loss_fn(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss == "ce":
            return nn.functional.cross_entropy(logits, y, reduction="none")
        if self.loss == "margin":
            return logit_margin(logits, y)
        return dlr_loss(logits, y)

    def loss_and_grad(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image loss, its gradient with respect to ``x``, whether ``model`` misclassifies ``x``, and the logits."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            loss = self._loss_fn(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad.detach(), logits.detach().argmax(1) != y, logits.detach()

    # ----------------------------------------------------------------------------------------
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``restarts`` runs of ``steps`` APGD iterations; later restarts only on images not yet fooled."""
        if self.loss == "dlr":
            with torch.no_grad():
                n_classes = model(x[:1]).shape[1]
            if n_classes < 3:
                raise DfrobustError(f"the DLR loss needs >= 3 classes but the model has {n_classes}; use --loss ce or --loss margin")
        n = len(x)
        gen = torch.Generator().manual_seed(self.seed)
        x_out = x.clone()
        out_loss = torch.full((n,), -math.inf, device=x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        spent = torch.zeros(n, dtype=torch.long, device=x.device)
        bar = progress(total=self.restarts * self.steps, desc=f"APGD-{self.loss.upper()}", unit="step")
        for restart in range(self.restarts):
            # drawn for the whole batch every restart, so an image's start does not depend on the others
            start = self._start(x.shape, gen).to(x.device, x.dtype)
            rows = (~fooled).nonzero().squeeze(1)
            if len(rows) == 0:
                bar.update((self.restarts - restart) * self.steps)
                break
            x_r, loss_r, fooled_r, spent_r = self._single_run(model, x[rows], y[rows], start[rows], bar)
            spent[rows] += spent_r
            take = fooled_r | (loss_r > out_loss[rows])
            x_out[rows[take]] = x_r[take]
            out_loss[rows[take]] = loss_r[take]
            fooled[rows] |= fooled_r
            bar.set_postfix({"fooled (float images)": f"{int(fooled.sum())}/{n}"})  # before 8-bit rounding; runs count PNGs
        bar.close()
        with torch.no_grad():
            margin = logit_margin(model(x_out), y)
        return x_out, {"loss": out_loss, "margin": margin, "grad_steps": spent}

    def _single_run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, bar: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run; returns per image the chosen point, its loss, whether it is misclassified and the gradient
        evaluations spent on it."""
        n = len(x)
        x_adv = (x + start).clamp(0, 1)
        loss, grad, mis, logits = self.loss_and_grad(model, x_adv, y)
        # highest-loss point overall (restart point) and highest-loss misclassified point (returned)
        st = _RunState(
            rows=torch.arange(n, device=x.device), x=x, y=y, x_adv=x_adv, x_prev=x_adv.clone(), grad=grad,
            loss_prev=loss.clone(), x_best=x_adv.clone(), loss_best=loss.clone(), grad_best=grad.clone(),
            adv_best=x_adv.clone(), adv_loss=torch.where(mis, loss, torch.full_like(loss, -math.inf)), found=mis.clone(),
            step=torch.full((n,), 2 * self.eps, device=x.device), increases=torch.zeros(n, device=x.device),
            best_at_check=loss.clone(),
            reduced_at_check=torch.ones(n, dtype=torch.bool, device=x.device),  # no condition 2 at the first checkpoint
        )  # fmt: skip
        out = (x_adv.clone(), loss.clone(), mis.clone())  # the result of every image, filled as images stop
        spent = torch.ones(n, dtype=torch.long, device=x.device)
        self._stop(model, st, logits, loss, out)
        window, shortest, shrink = checkpoint_lengths(self.steps)
        since_check = 0

        for i in range(self.steps):
            if len(st.rows) == 0:
                bar.update(self.steps - i)
                break
            a = self.alpha if i > 0 else 1.0
            z = self._project(st.x_adv + per_image(st.step) * self._direction(st.grad), st.x)
            x_new = self._project(st.x_adv + a * (z - st.x_adv) + (1 - a) * (st.x_adv - st.x_prev), st.x)
            st.x_prev, st.x_adv = st.x_adv, x_new
            loss, st.grad, mis, logits = self.loss_and_grad(model, st.x_adv, st.y)
            spent[st.rows] += 1

            st.increases += (loss > st.loss_prev).float()
            st.loss_prev = loss
            # torch.where, not masked assignment: no host sync per step on a GPU
            better = loss > st.loss_best
            st.x_best = torch.where(per_image(better), st.x_adv, st.x_best)
            st.grad_best = torch.where(per_image(better), st.grad, st.grad_best)
            st.loss_best = torch.where(better, loss, st.loss_best)
            better_adv = mis & (loss > st.adv_loss)
            st.adv_best = torch.where(per_image(better_adv), st.x_adv, st.adv_best)
            st.adv_loss = torch.where(better_adv, loss, st.adv_loss)
            st.found |= mis
            self._stop(model, st, logits, loss, out)

            since_check += 1
            if since_check == window:
                oscillating = st.increases <= window * self.rho
                stalled = ~st.reduced_at_check & (st.best_at_check >= st.loss_best)
                reduce = oscillating | stalled
                st.step = torch.where(reduce, st.step / 2, st.step)
                st.x_adv = torch.where(per_image(reduce), st.x_best, st.x_adv)
                st.grad = torch.where(per_image(reduce), st.grad_best, st.grad)
                st.loss_prev = torch.where(reduce, st.loss_best, st.loss_prev)  # the next step is compared with the restart point
                st.reduced_at_check = reduce
                st.best_at_check = st.loss_best.clone()
                st.increases.zero_()
                since_check = 0
                window = max(window - shrink, shortest)
            bar.update()

        out[0][st.rows] = torch.where(per_image(st.found), st.adv_best, st.x_best)
        out[1][st.rows] = torch.where(st.found, st.adv_loss, st.loss_best)
        out[2][st.rows] = st.found
        return out[0], out[1], out[2], spent

    def _stop(self, model: nn.Module, st: _RunState, logits: torch.Tensor, loss: torch.Tensor, out: tuple[torch.Tensor, ...]) -> None:
        """With ``stop_margin``: record the images fooled for good at their current iterate in ``out`` and drop them from ``st``."""
        if self.stop_margin is None:
            return
        done = fooled_for_good(model, st.x_adv, st.y, logits, self.stop_margin)
        if bool(done.any()):
            where = st.rows[done]
            out[0][where], out[1][where], out[2][where] = st.x_adv[done], loss[done], True
            st.keep(~done)


@dataclass
class _RunState:
    """Per-image state of one APGD run (one row per image still iterating); :meth:`keep` drops the stopped ones."""

    rows: torch.Tensor  # positions in the run's batch
    x: torch.Tensor
    y: torch.Tensor
    x_adv: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    loss_prev: torch.Tensor
    x_best: torch.Tensor
    loss_best: torch.Tensor
    grad_best: torch.Tensor
    adv_best: torch.Tensor
    adv_loss: torch.Tensor
    found: torch.Tensor
    step: torch.Tensor
    increases: torch.Tensor
    best_at_check: torch.Tensor
    reduced_at_check: torch.Tensor

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the rows where ``mask`` is true, in every field."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name)[mask])
