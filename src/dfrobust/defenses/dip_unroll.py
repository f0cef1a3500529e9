"""A differentiable stand-in for DIP: its output at ``T`` with the last ``k`` Adam steps unrolled.

DIP's output at iteration ``T`` is ``f(theta_{T-1}, z)``, where ``theta`` was fitted to the image
``x`` by ``T - 1`` Adam steps. :func:`dip_unrolled` runs the first ``T - 1 - k`` steps as DIP
does (no graph), then the last ``k`` as a functional Adam whose gradients keep their graph
(``create_graph``), so the returned output is a function of ``x`` through those ``k`` updates:
BPDA with this stand-in follows how DIP's fit to ``x`` moves its output, not the identity.
The earlier steps are treated as constants (the rest of the trajectory is detached).

>>> out = dip_unrolled(x.requires_grad_(), [0, 1], DipConfig(iterations=20), at=12, steps=3)  # doctest: +SKIP
>>> torch.autograd.grad(out.sum(), x)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import functional_call

from dfrobust.defenses.dip import DipConfig, DipRun
from dfrobust.defenses.dip_net import crop_back, reflect_pad_to
from dfrobust.errors import DfrobustError

#: Added to Adam's second moment under the square root: its derivative stays finite where a gradient is exactly 0.
_SQRT_FLOOR = 1e-30


def _fresh_input(run: DipRun) -> torch.Tensor:
    """The network input of the next iteration: ``z`` plus fresh noise from each image's own stream (as DipRun.step)."""
    for b, gen in enumerate(run.noise_gens):  # draws only: per-image random streams
        run.noise[b].normal_(generator=gen)
    return run.z + run.noise.to(run.dtype) * run.cfg.reg_noise_std


def dip_unrolled(x: torch.Tensor, seeds: Sequence[int], cfg: DipConfig, at: int, steps: int) -> torch.Tensor:
    """DIP's output at iteration ``at`` for images ``x`` (``B x 3 x H x W``), differentiable through the last ``steps`` Adam updates.

    Image ``b`` uses seed ``seeds[b]`` (its network, input and noise stream, as in
    :func:`~dfrobust.defenses.dip.purify_batch`). The value equals DIP's output up to the
    rounding of the functional Adam; the gradient with respect to ``x`` flows through the
    target of the last ``min(steps, at - 1)`` fitting steps (second-order: the gradient of the
    fitting loss is itself differentiated).
    """
    if cfg.early_stop:
        raise DfrobustError("unrolling DIP needs a fixed output iteration; early stopping (early_stop) picks a data-dependent one")
    if steps < 1:
        raise DfrobustError(f"unrolling DIP needs --unroll-steps >= 1, got {steps}")
    if at < 2:
        raise DfrobustError(f"unrolling DIP needs an output iteration >= 2, got {at}")
    k = min(steps, at - 1)
    run = DipRun(x.detach(), seeds, cfg)
    with torch.no_grad():
        for _ in range(at - 1 - k):
            run.step()
    group = run.opt.param_groups[0]
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    names, params = zip(*run.net.named_parameters())
    theta = [p.detach().clone().requires_grad_(True) for p in params]
    moments = []
    for p in params:
        state = run.opt.state.get(p, {})
        m = state["exp_avg"].detach().clone() if "exp_avg" in state else torch.zeros_like(p)
        v = state["exp_avg_sq"].detach().clone() if "exp_avg_sq" in state else torch.zeros_like(p)
        moments.append((m, v))
    t = float(run.opt.state[params[0]]["step"]) if params[0] in run.opt.state else 0.0
    target, _ = reflect_pad_to(x.to(run.device, run.dtype), *run.target.shape[-2:])
    with torch.enable_grad():
        for _ in range(k):
            out_p = functional_call(run.net, dict(zip(names, theta)), (_fresh_input(run),))
            loss = (out_p.to(run.dtype) - target).pow(2).flatten(1).mean(1).sum()
            grads = torch.autograd.grad(loss, theta, create_graph=True)
            t += 1
            bias1, bias2 = 1 - beta1**t, 1 - beta2**t
            new_theta, new_moments = [], []
            for p, g, (m, v) in zip(theta, grads, moments):
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                new_theta.append(p - lr * (m / bias1) / ((v / bias2 + _SQRT_FLOOR).sqrt() + eps))
                new_moments.append((m, v))
            theta, moments = new_theta, new_moments
        out_p = functional_call(run.net, dict(zip(names, theta)), (_fresh_input(run),))
    return crop_back(out_p.to(x.dtype), run.pads).to(x.device)
