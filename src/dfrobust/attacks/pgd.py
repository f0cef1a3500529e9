"""PGD (Madry et al. 2018) in the Linf or L2 ball: the standard iterative baseline."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from dfrobust.attacks.base import Attack, budget_value, per_image, project_ball, register_attack
from dfrobust.attacks.early_stop import STOP_MARGIN, StopsEarly, fooled_for_good, loss_grad_logits
from dfrobust.constants import PAPER_EPS
from dfrobust.utils.params import Boolean, Budget, Interval, StrOptions

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = get_args(Norm)
#: Radius used when ``eps`` is not given.
DEFAULT_EPS = {"linf": PAPER_EPS, "l2": 1.0}


@register_attack(labels={"pgd-linf": "PGD-Linf", "pgd-l2": "PGD-L2"}, order={"pgd-linf": 2, "pgd-l2": 3})
class PGD(StopsEarly, Attack):
    """Untargeted projected gradient ascent on the cross-entropy loss, with a random start.

    Args:
        eps: radius of the ball; when not given, the norm's entry of ``DEFAULT_EPS`` (``linf``: 0.02,
            the paper's FGSM budget; ``l2``: 1.0).
        norm: ``linf`` (signed steps, box projection) or ``l2`` (normalised steps, ball projection).
        steps: number of gradient steps.
        step_size: step length (default ``2.5 * eps / steps``, Madry et al.).
        random_start: start from a uniform random point of the ball (seeded).
        seed: seed of the random start.
        stop_margin: stop stepping an image once its logit margin for a wrong class exceeds this and its
            8-bit rounding is misclassified too (it keeps that iterate); the remaining steps run on the
            other images only. Not given (the default): every image takes every step and returns its last iterate.

    Extras in the result (per image): ``grad_steps``, the gradient evaluations spent on the image.
    """

    name = "pgd"
    params = {
        "eps": Budget(norm_param="norm", optional=True),
        "norm": StrOptions(*NORMS),
        "steps": Interval(1, integer=True),
        "step_size": Interval(0, optional=True),  # 0 at the start of an adversarial-training ramp
        "random_start": Boolean(),
        "stop_margin": STOP_MARGIN,
    }

    def __init__(
        self,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed: int = 0,
        stop_margin: float | None = None,
    ) -> None:
        self.norm = norm
        self.eps = budget_value(DEFAULT_EPS[norm] if eps is None else eps, norm)
        self.steps = int(steps)
        self.step_size = float(2.5 * self.eps / self.steps if step_size is None else step_size)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        self.stop_margin = None if stop_margin is None else float(stop_margin)

    @property
    def label(self) -> str:
        """``pgd-linf`` or ``pgd-l2``."""
        return f"pgd-{self.norm}"

    def _project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return project_ball(x_adv, x, self.eps, self.norm)

    def _random_start(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)  # on the CPU: the same start on any device
        if self.norm == "linf":
            delta = (torch.rand(x.shape, generator=gen) * 2 - 1) * self.eps
        else:
            direction = torch.randn(x.shape, generator=gen)
            direction = direction / per_image(direction.flatten(1).norm(dim=1).clamp_min(1e-12))
            # radius U^(1/d) * eps: uniform in the volume of the ball
            radius = torch.rand(len(x), generator=gen) ** (1.0 / x[0].numel()) * self.eps
            delta = direction * per_image(radius)
        return (x + delta.to(x.device, x.dtype)).clamp(0, 1)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``steps`` projected steps from a random start (or from ``x``); with ``stop_margin``, fooled images stop early."""
        x_adv = self._random_start(x) if self.random_start else x.clone()
        out = x_adv.clone()
        spent = torch.zeros(len(x), dtype=torch.long, device=x.device)
        rows = torch.arange(len(x), device=x.device)  # the images still stepping, as positions in the batch
        for _ in range(self.steps):
            grad, logits = loss_grad_logits(model, x_adv, y)
            spent[rows] += 1
            if self.stop_margin is not None:
                done = fooled_for_good(model, x_adv, y, logits, self.stop_margin)
                if bool(done.any()):
                    out[rows[done]] = x_adv[done]
                    keep = ~done
                    rows, x_adv, x, y, grad = rows[keep], x_adv[keep], x[keep], y[keep], grad[keep]
                    if len(rows) == 0:
                        break
            if self.norm == "linf":
                step = grad.sign()
            else:
                step = grad / per_image(grad.flatten(1).norm(dim=1).clamp_min(1e-12))
            x_adv = self._project(x_adv + self.step_size * step, x)
        out[rows] = x_adv
        return out, {"grad_steps": spent}
