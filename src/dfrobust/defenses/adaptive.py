"""Adaptive attacks on a purifier: the model ``x -> model(P(x))`` with a BPDA backward pass and EOT.

Athalye, Carlini and Wagner (ICML 2018): a purifier ``P`` without a useful gradient is attacked
through a stand-in on the backward pass (BPDA), averaged over ``P``'s randomness (EOT).
:class:`PurifiedModel` is a module, so any registered attack runs on it unchanged:

>>> through = PurifiedModel(model, make_purifier("dip", iterations=200), bpda="fitted-blur", eot=4)  # doctest: +SKIP
>>> result = make_attack("apgd", eps=4 / 255)(through, x, y)  # doctest: +SKIP

Backward stand-ins (``bpda``):

- ``identity``: ``dP/dx = I`` (advertorch's BPDAWrapper default).
- ``surrogate``: the purifier's own differentiable :meth:`~dfrobust.defenses.base.Purifier.surrogate`
  (``blur`` is its own).
- ``fitted-blur``: a Gaussian blur whose sigma is fitted, per image and per draw, to the
  purifier's actual output on that very input (least squares over :data:`FIT_SIGMAS`): DIP's
  output at ``T`` is a low-pass reconstruction, and this stand-in follows its bandwidth.
- ``unroll``: DIP only: differentiate through the last ``unroll_steps`` Adam steps of the fit
  (:mod:`dfrobust.defenses.dip_unroll`).
- ``exact``: DIP only: no stand-in, the true gradient through every step of the fit
  (:mod:`dfrobust.defenses.dip_exact`, checkpointed in segments of ``segment`` steps).

The forward value is always the purifier's real output (``exact``: the same computation, unfused);
only the gradient is approximated. Attack-time draws take purifier seeds at or above
:data:`ATTACK_SEED_BASE`, evaluation draws below it, so no evaluation draw is one the attack saw.
:func:`evaluate_through` scores images through a purifier on one draw and on the worst of N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import frozen_eval, model_device
from dfrobust.constants import REAL
from dfrobust.defenses.base import Purifier
from dfrobust.defenses.dip import Dip
from dfrobust.defenses.dip_exact import dip_exact
from dfrobust.defenses.dip_unroll import dip_unrolled
from dfrobust.errors import DfrobustError
from dfrobust.utils.imageops import gaussian_blur
from dfrobust.utils.runtime import progress

BPDA_MODES = ("identity", "surrogate", "fitted-blur", "unroll", "exact")
#: Gaussian sigmas (pixels) the ``fitted-blur`` stand-in chooses from; 0 is the identity.
FIT_SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
#: Draw ``d`` of an evaluation uses purifier seeds from ``seed + d * DRAW_STRIDE`` (image ``j`` adds ``j``).
DRAW_STRIDE = 1 << 24
#: Attack-time purifier seeds start here; evaluation seeds (:func:`draw_seed`) stay below it.
ATTACK_SEED_BASE = 1 << 40


def fit_blur_sigma(x: torch.Tensor, target: torch.Tensor, sigmas: Sequence[float] = FIT_SIGMAS) -> torch.Tensor:
    """Per image, the sigma of ``sigmas`` whose Gaussian blur of ``x`` is closest (MSE) to ``target``.

    Both are ``N x 3 x H x W``; returns ``N`` sigmas (float, on ``x``'s device). Ties go to the
    smaller sigma.
    """
    if not sigmas:
        raise DfrobustError("fit_blur_sigma needs at least one sigma")
    x, target = x.detach(), target.detach().to(x.dtype)
    # a loop over the candidate sigmas, each a batched blur of all images
    errors = torch.stack([((gaussian_blur(x, s) if s > 0 else x) - target).pow(2).flatten(1).mean(1) for s in sigmas], 1)
    grid = torch.tensor([float(s) for s in sigmas], device=x.device, dtype=x.dtype)
    return grid[errors.argmin(1)]


def check_bpda(purifier: Purifier, bpda: str) -> None:
    """One-line error when ``bpda`` is unknown or does not apply to ``purifier`` (before any work starts)."""
    if bpda not in BPDA_MODES:
        raise DfrobustError(f"--bpda must be one of {', '.join(BPDA_MODES)}, got {bpda!r}")
    if bpda == "surrogate" and type(purifier).surrogate is Purifier.surrogate:
        raise DfrobustError(
            f"purifier {purifier.name} has no differentiable surrogate; use --bpda identity, fitted-blur"
            + (", unroll or exact" if isinstance(purifier, Dip) and not purifier.config.early_stop else "")
        )
    if bpda in ("unroll", "exact") and not isinstance(purifier, Dip):
        raise DfrobustError(
            f"--bpda {bpda} differentiates DIP's fit; purifier {purifier.name} is not DIP (use identity, surrogate or fitted-blur)"
        )
    if bpda in ("unroll", "exact") and purifier.config.early_stop:
        raise DfrobustError(
            f"--bpda {bpda} differentiates DIP's fit up to a fixed iteration; DIP with early_stop stops at a data-dependent one "
            "(use identity or fitted-blur, or turn early_stop off)"
        )


class PurifiedModel(nn.Module):
    """``model(P(x))`` whose gradient is BPDA through a stand-in of ``P``, averaged over ``eot`` draws of ``P``.

    Each forward draws one purifier seed from the module's own generator (seeded with
    ``seed``) and purifies ``eot`` copies of the batch at once (draw-major: rows ``k*N`` to
    ``(k+1)*N - 1`` are draw ``k``; a random purifier gives each row its own draw); the
    returned logits are the mean over the draws, so their gradient is the EOT average. A
    deterministic purifier is purified once, whatever ``eot`` is. When no input gradient is
    asked for (``no_grad`` or an input that does not require it), the stand-in is skipped.

    After :meth:`watch` with the batch's labels, every forward on the whole batch records which
    images one of its draws misclassified (:attr:`fooled_iterates`): the BPDA+EOT rule of
    DiffPure's evaluation, where an image is broken when any attack iterate fools a fresh
    purification.

    Args:
        model: the detector (2 logits).
        purifier: the purifier the attack sees (possibly cheaper than the defense's own).
        bpda: backward stand-in: ``identity``, ``surrogate``, ``fitted-blur`` or ``unroll`` (module docstring).
        eot: draws of a random purifier per forward (Expectation over Transformation).
        seed: seed of the stream of purifier draws.
        unroll_steps: Adam steps of DIP's fit differentiated through when ``bpda="unroll"``.
        fit_sigmas: the sigmas ``fitted-blur`` chooses from.
        segment: fitting steps per recomputed segment when ``bpda="exact"`` (default: about sqrt of the steps).
        on_forward: called after every forward (progress lines for a slow purifier).
    """

    def __init__(
        self,
        model: nn.Module,
        purifier: Purifier,
        bpda: str = "identity",
        eot: int = 1,
        seed: int = 0,
        unroll_steps: int = 4,
        fit_sigmas: Sequence[float] = FIT_SIGMAS,
        segment: int | None = None,
        on_forward: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        check_bpda(purifier, bpda)
        if eot < 1:
            raise DfrobustError(f"--eot must be >= 1, got {eot}")
        if bpda == "unroll" and unroll_steps < 1:
            raise DfrobustError(f"--unroll-steps must be >= 1, got {unroll_steps}")
        self.model = model
        self.purifier = purifier
        self.bpda = bpda
        self.eot = int(eot)
        self.draws = self.eot if purifier.random else 1
        self.unroll_steps = int(unroll_steps)
        self.fit_sigmas = tuple(float(s) for s in fit_sigmas)
        self.segment = segment
        self.on_forward = on_forward
        self.labels: torch.Tensor | None = None
        self.fooled_iterates: torch.Tensor | None = None  #: per watched image: a forward's draw misclassified it
        self.generator = torch.Generator().manual_seed(int(seed))
        self.forwards = 0  #: forward passes so far (purifier calls)
        self._sigma_sum = 0.0
        self._sigma_count = 0

    @property
    def sigma_mean(self) -> float | None:
        """Mean sigma the ``fitted-blur`` stand-in chose over all gradient passes (``None`` before any)."""
        return self._sigma_sum / self._sigma_count if self._sigma_count else None

    def watch(self, labels: torch.Tensor) -> None:
        """Record, from now on, which of these images (the whole batch, in order) any forward's draw misclassifies."""
        self.labels = labels.detach().view(-1)
        self.fooled_iterates = torch.zeros(len(self.labels), dtype=torch.bool, device=self.labels.device)

    def next_seed(self) -> int:
        """The purifier seed of the next forward (0 for a deterministic purifier; at or above :data:`ATTACK_SEED_BASE` else)."""
        if not self.purifier.random:
            return 0
        return ATTACK_SEED_BASE + int(torch.randint(0, 1 << 61, (1,), generator=self.generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logits over the draws of ``model(P(x))``; the input gradient is the BPDA stand-in's."""
        n = len(x)
        xs = x if self.draws == 1 else x.repeat(self.draws, 1, 1, 1)
        seed = self.next_seed()
        self.forwards += 1
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        seeds = [seed + i for i in range(len(xs))]
        if wants_grad and self.bpda in ("unroll", "exact"):
            dip = self.purifier
            assert isinstance(dip, Dip)  # check_bpda
            if self.bpda == "unroll":
                purified = dip_unrolled(xs, seeds, dip.config, dip.classify_at, self.unroll_steps)
            else:
                purified = dip_exact(xs, seeds, dip.config, dip.classify_at, self.segment, on_step=_step_progress(dip.classify_at, len(xs)))
        else:
            purified = self.purifier(xs, seed)
            if wants_grad:
                stand_in = self._stand_in(xs, purified)
                # the value stays the purifier's output exactly (s - s is 0); the gradient is the stand-in's
                purified = purified + (stand_in - stand_in.detach())
        logits = self.model(purified)
        if self.labels is not None and n == len(self.labels):
            wrong = logits.detach().view(self.draws, n, -1).argmax(2) != self.labels.to(logits.device).view(1, -1)
            self.fooled_iterates |= wrong.any(0).to(self.fooled_iterates.device)
        if self.draws > 1:
            logits = logits.view(self.draws, n, *logits.shape[1:]).mean(0)
        if self.on_forward is not None:
            self.on_forward()
        return logits

    def _stand_in(self, xs: torch.Tensor, purified: torch.Tensor) -> torch.Tensor:
        """The differentiable stand-in of the purifier at ``xs`` (its output ``purified`` is known)."""
        if self.bpda == "surrogate":
            out = self.purifier.surrogate(xs)
            if out is None:  # check_bpda refuses such purifiers; a plug-in may still return None for some inputs
                return xs
            return out
        if self.bpda == "fitted-blur":
            sigma = fit_blur_sigma(xs, purified, self.fit_sigmas)
            self._sigma_sum += float(sigma.sum())
            self._sigma_count += len(sigma)
            return gaussian_blur(xs, sigma)  # sigma 0 leaves an image as it is
        return xs


def _step_progress(at: int, images: int) -> Callable[[int], None]:
    """Progress lines over one exact gradient's fitting steps: the forward fit, then its recomputation backwards."""
    total = 2 * max(at - 1, 0)
    bar = progress(total=total, desc=f"exact DIP gradient ({images} images, T = {at}: fit, then back)", unit="step")

    def update(k: int) -> None:
        bar.update(k)
        if bar.n >= total:
            bar.close()

    return update


def draw_seed(seed: int, draw: int) -> int:
    """The purifier seed of evaluation draw ``draw`` (image ``j`` of the run adds ``j``: DIP's per-image seeds)."""
    return int(seed) + int(draw) * DRAW_STRIDE


@torch.no_grad()
def evaluate_through(
    model: nn.Module,
    purifier: Purifier,
    x: torch.Tensor,
    y: torch.Tensor,
    draws: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    offset: int = 0,
) -> dict[str, Any]:
    """Classify ``P(x)`` on ``draws`` independent purifications per image: one-draw and worst-of-N accuracy.

    Draw ``d`` purifies with seed :func:`draw_seed` ``(seed, d)`` plus the image's index
    (``offset`` + its position in ``x``); all draws of a batch are purified in one call
    (:meth:`~dfrobust.defenses.base.Purifier.purify_seeded`), so an image's draw seeds do not depend on the batching,
    and the same images at the same indices get the same draws (common random numbers between
    clean and adversarial versions). A deterministic purifier takes one draw whatever ``draws``
    is. A prediction is ``REAL`` when ``P(real) >= 0.5``.

    Returns:
        ``n``, ``draws`` (the draws taken), ``accuracy_one`` (draw 0), ``accuracy_worst`` (an
        image counts as correct only when every draw is), and per-image tensors (CPU):
        ``p_real`` and ``pred`` of draw 0, ``p_real_draws`` (``draws x N``), ``correct_one``,
        ``correct_draws`` (how many draws were correct) and ``fooled_any``.
    """
    if draws < 1:
        raise DfrobustError(f"--eval-draws must be >= 1, got {draws}")
    if draw_seed(seed, draws - 1) + offset + len(x) >= ATTACK_SEED_BASE:
        raise DfrobustError(f"--seed {seed} with {draws} evaluation draws reaches the attack's purifier seeds; use a smaller --seed")
    taken = draws if purifier.random else 1
    n = len(x)
    device = model_device(model)
    scores = torch.empty(taken, n)
    starts = range(0, n, batch_size)
    # a DIP purification takes minutes: one line per batch and draw (silent for a cheap purifier)
    bar = progress(total=taken * len(starts), desc=f"purify through {purifier.name}", unit="batch", disable=not purifier.random or None)
    with frozen_eval(model), bar:
        for start in starts:
            xb = x[start : start + batch_size].to(device)
            k = len(xb)
            # every draw of the batch in one purifier call (DIP fits them all as one batch)
            seeds = [draw_seed(seed, d) + offset + start + i for d in range(taken) for i in range(k)]
            purified = purifier.purify_seeded(xb.repeat(taken, 1, 1, 1), seeds)
            logits = model(purified)
            scores[:, start : start + k] = logits.float().softmax(1)[:, REAL].view(taken, k).cpu()
            bar.update(taken)
    preds = (scores >= 0.5).long()
    correct = preds == y.cpu().view(1, -1)
    every = correct.all(0)
    return {
        "n": n,
        "draws": taken,
        "accuracy_one": float(correct[0].float().mean()) if n else float("nan"),
        "accuracy_worst": float(every.float().mean()) if n else float("nan"),
        "p_real": scores[0],
        "pred": preds[0],
        "p_real_draws": scores,
        "correct_one": correct[0],
        "correct_draws": correct.sum(0),
        "fooled_any": ~every,
    }
