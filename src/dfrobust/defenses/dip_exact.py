"""DIP's output as an exact, differentiable function of its input image, through every step of the fit.

DIP's output at iteration ``T`` is ``f(theta_{T-1}, z + n_T)``, where ``theta_{T-1}`` came from
``T - 1`` Adam steps on ``MSE(f(theta, z + n_t), x)``: every step pulls the network toward the
image ``x``, so the output depends on ``x`` through all of them. :func:`dip_exact` returns that
output with its true gradient (the attack an adaptive evaluation needs; Athalye et al. 2018's
"exact gradients where they can be had"), not a stand-in.

Memory: the fit runs forward without a graph and keeps the optimiser state (``theta``, Adam's
two moments, the noise generators' states) every ``segment`` steps. The backward pass walks the
segments last to first: it recomputes one segment with a second-order graph (the fitting
gradient is itself differentiated) and pulls the adjoint of the state back through it, so
memory grows with ``T / segment`` saved states plus one segment's graph, not with ``T`` graphs.
The default segment is ``ceil(sqrt(T - 1))``, which balances the two.

The forward value is DIP's output up to float rounding: the optimiser is a functional Adam with
``torch.optim.Adam``'s formula (the purifier uses the fused kernel). ``DipRun``'s network, input
``z`` and per-image noise streams are used as they are, so image ``b`` with seed ``seeds[b]`` is
the draw :class:`~dfrobust.defenses.dip.Dip` makes for that seed. The output is the raw image
at ``T`` (what :class:`~dfrobust.defenses.dip.Dip` classifies), not the running average.

>>> out = dip_exact(x.requires_grad_(), [0, 1], DipConfig(iterations=20), at=12)  # doctest: +SKIP
>>> torch.autograd.grad(out.sum(), x)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call

from dfrobust.defenses.dip import DipConfig, DipRun
from dfrobust.defenses.dip_net import crop_back, reflect_pad_to
from dfrobust.errors import DfrobustError

log = logging.getLogger(__name__)
#: Added to Adam's second moment under the square root: its derivative stays finite where a gradient is exactly 0.
_SQRT_FLOOR = 1e-30
#: Adam's betas and eps as the purifier's optimiser uses them (torch.optim.Adam's defaults).
_BETAS, _EPS = (0.9, 0.999), 1e-8


def default_segment(steps: int) -> int:
    """Steps per checkpointed segment when none is given: ``ceil(sqrt(steps))`` (memory ~ ``2 sqrt(steps)`` states)."""
    return max(1, math.ceil(math.sqrt(max(steps, 1))))


@dataclass
class _State:
    """The optimiser's state after ``t`` Adam steps: every parameter, both moments (flat), the noise generators' states."""

    t: int
    theta: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    noise_states: list[torch.Tensor]

    def leaves(self) -> _State:
        """A copy whose tensors are fresh leaves that require grad (a segment's inputs on the backward pass)."""
        theta, m, v = (q.detach().requires_grad_(True) for q in (self.theta, self.m, self.v))
        return _State(self.t, theta, m, v, self.noise_states)


class _Fit:
    """One batch's DIP fit as pure functions of (state, image): what the forward and backward passes share.

    The parameters live in one flat vector (the network sees views of it): Adam is then a handful of
    operations per step rather than a handful per parameter tensor, which dominated the time.
    """

    def __init__(self, x: torch.Tensor, seeds: Sequence[int], cfg: DipConfig) -> None:
        if cfg.amp != "none":
            raise DfrobustError("exact DIP gradients need the generator in full precision (amp none)")
        self.run = run = DipRun(x.detach(), seeds, cfg)
        self.cfg, self.dtype, self.device = cfg, run.dtype, run.device
        named = list(run.net.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta0 = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.shape = run.target.shape[-2:]

    def start(self) -> _State:
        """The state before the first step: the seeded initial network, zero moments."""
        return _State(0, self.theta0, torch.zeros_like(self.theta0), torch.zeros_like(self.theta0), [])

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The padded image the fit pulls toward (differentiable in ``x``)."""
        return reflect_pad_to(x.to(self.device, self.dtype), *self.shape)[0]

    def net_input(self) -> torch.Tensor:
        """The next iteration's input: ``z`` plus fresh noise from each image's stream (as :meth:`DipRun.step`)."""
        run = self.run
        for b, gen in enumerate(run.noise_gens):  # draws only: per-image random streams
            run.noise[b].normal_(generator=gen)
        return run.z + run.noise.to(self.dtype) * self.cfg.reg_noise_std

    def output(self, theta: torch.Tensor) -> torch.Tensor:
        """The generator's (padded) output with parameters ``theta`` (flat) for the next input noise."""
        params = {n: t.view(shape) for n, t, shape in zip(self.names, theta.split(self.sizes), self.shapes)}
        return functional_call(self.run.net, params, (self.net_input(),))

    def step(self, state: _State, target: torch.Tensor, create_graph: bool) -> _State:
        """One Adam step on the sum of per-image MSEs (``torch.optim.Adam``'s update, written functionally)."""
        theta = state.theta if create_graph else state.theta.detach().requires_grad_(True)
        loss = (self.output(theta).to(self.dtype) - target).pow(2).flatten(1).mean(1).sum()
        (g,) = torch.autograd.grad(loss, theta, create_graph=create_graph)
        t = state.t + 1
        (beta1, beta2), lr = _BETAS, self.cfg.lr
        step_size, bias2_sqrt = lr / (1 - beta1**t), math.sqrt(1 - beta2**t)
        with torch.set_grad_enabled(create_graph):
            m = beta1 * state.m + (1 - beta1) * g
            v = beta2 * state.v + (1 - beta2) * g * g
            theta = theta - step_size * m / ((v + _SQRT_FLOOR).sqrt() / bias2_sqrt + _EPS)
        if not create_graph:
            theta = theta.detach()
        return _State(t, theta, m, v, [])

    def noise_states(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.run.noise_gens]

    def set_noise_states(self, states: Sequence[torch.Tensor]) -> None:
        for g, s in zip(self.run.noise_gens, states):
            g.set_state(s)


class _ExactDip(torch.autograd.Function):
    """``x -> DIP(x)`` at iteration ``at``; backward: segment-wise recomputation with a second-order graph."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, seeds: tuple[int, ...], cfg: DipConfig, at: int, segment: int, on_step: Callable | None):  # type: ignore[override]
        fit = _Fit(x, seeds, cfg)
        target = fit.target(x.detach())
        state = fit.start()
        saved: list[_State] = []
        for s in range(at - 1):
            if s % segment == 0:
                saved.append(_State(state.t, state.theta, state.m, state.v, fit.noise_states()))
            with torch.enable_grad():
                state = fit.step(state, target, create_graph=False)
            if on_step is not None:
                on_step(1)
        last = _State(state.t, state.theta, state.m, state.v, fit.noise_states())
        with torch.no_grad():
            out = fit.output(state.theta)
        ctx.fit, ctx.saved, ctx.last, ctx.at, ctx.on_step = fit, saved, last, at, on_step
        ctx.save_for_backward(x)
        return crop_back(out.to(x.dtype), fit.run.pads).to(x.device)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        fit: _Fit = ctx.fit
        pads = fit.run.pads
        grad_padded = torch.zeros(*grad_out.shape[:2], *fit.shape, device=fit.device, dtype=fit.dtype)
        top, left = pads[2], pads[0]
        grad_padded[..., top : top + grad_out.shape[-2], left : left + grad_out.shape[-1]] = grad_out.to(fit.device, fit.dtype)
        with torch.enable_grad():
            theta = ctx.last.theta.detach().requires_grad_(True)
            fit.set_noise_states(ctx.last.noise_states)
            (adj_theta,) = torch.autograd.grad(fit.output(theta).to(fit.dtype), theta, grad_padded)
        adj_m, adj_v = torch.zeros_like(adj_theta), torch.zeros_like(adj_theta)
        grad_x = torch.zeros_like(x, dtype=fit.dtype, device=fit.device)
        ends = [s.t for s in ctx.saved[1:]] + [ctx.last.t]
        for start, end in zip(reversed(ctx.saved), reversed(ends)):
            with torch.enable_grad():
                xs = x.detach().to(fit.device, fit.dtype).requires_grad_(True)
                target = fit.target(xs)
                state = first = start.leaves()
                fit.set_noise_states(start.noise_states)
                for _ in range(end - start.t):
                    state = fit.step(state, target, create_graph=True)
                # the first segment's theta and moments are constants; x receives every segment's share
                grads = torch.autograd.grad(
                    [state.theta, state.m, state.v], [first.theta, first.m, first.v, xs], [adj_theta, adj_m, adj_v], allow_unused=True
                )
            adj_theta, adj_m, adj_v = (g if g is not None else torch.zeros_like(adj_theta) for g in grads[:3])
            if grads[3] is not None:
                grad_x += grads[3]
            if ctx.on_step is not None:
                ctx.on_step(end - start.t)
        grad_x = grad_x.to(x.dtype)
        if not torch.isfinite(grad_x).all():  # Adam's normalised first steps can blow the adjoint up past float range
            bad = int((~torch.isfinite(grad_x)).sum())
            log.warning(f"exact DIP gradient: {bad} non-finite entries set to 0 (try dtype float64 for the attack-time DIP)")
            grad_x = torch.nan_to_num(grad_x, nan=0.0, posinf=0.0, neginf=0.0)
        return grad_x.to(x.device), None, None, None, None, None


def dip_exact(
    x: torch.Tensor,
    seeds: Sequence[int],
    cfg: DipConfig,
    at: int,
    segment: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """DIP's output at iteration ``at`` for images ``x`` (``B x 3 x H x W``), with its exact gradient in ``x``.

    Image ``b`` uses seed ``seeds[b]`` (its network, input and noise stream, as in
    :func:`~dfrobust.defenses.dip.purify_batch`). The gradient flows through all ``at - 1``
    Adam steps of the fit (second order: the fitting gradient is differentiated), recomputed
    in checkpointed segments of ``segment`` steps (module docstring).

    Args:
        x: images in ``[0, 1]``.
        seeds: one DIP seed per image.
        cfg: the purifier's options (its ``lr``, architecture, noise and dtype are used).
        at: the iteration whose output is returned (the defense's ``classify_at``).
        segment: steps per recomputed segment (default :func:`default_segment`).
        on_step: called with the number of fitting steps done (forward and backward), for progress.
    """
    if cfg.early_stop:
        raise DfrobustError("exact DIP gradients need a fixed output iteration; early stopping (early_stop) picks a data-dependent one")
    if at < 1:
        raise DfrobustError(f"exact DIP gradients need an output iteration >= 1, got {at}")
    if len(seeds) != len(x):
        raise DfrobustError(f"need one DIP seed per image: {len(seeds)} seeds for {len(x)} images")
    segment = default_segment(at - 1) if segment is None else int(segment)
    if segment < 1:
        raise DfrobustError(f"--segment must be >= 1, got {segment}")
    return _ExactDip.apply(x, tuple(int(s) for s in seeds), cfg, int(at), segment, on_step)
