"""MI-FGSM (Dong et al. 2018), optionally with input diversity (DI, Xie et al. 2019): transfer attacks.

Iterative FGSM whose steps follow an accumulated gradient ``g <- decay * g + grad / mean|grad|``
(momentum stabilises the direction, so the perturbation transfers better to other models).
With input diversity, each gradient is taken on a randomly transformed copy of the image: with
probability ``di_prob`` per image and step, the image is shrunk to a random size in
``[0.9 * W, W)`` and zero-padded back to ``W x H`` at a random offset (torchattacks'
``DIFGSM.input_diversity`` with ``resize_rate=0.9``). ``di_prob=0.5`` is DI-MI-FGSM as in the
papers. Sizes, offsets and coin flips are drawn per image (torchattacks draws one per batch);
the resize-and-pad is one bilinear resampling (``grid_sample``), the same samples as
``interpolate`` followed by ``pad``.

To attack an ensemble of surrogate models, pass a :class:`dfrobust.models.ensemble.LogitEnsemble`
as the model.
"""

from __future__ import annotations

import torch
from torch import nn

from dfrobust.attacks.base import Attack, budget_value, register_attack
from dfrobust.constants import PAPER_EPS
from dfrobust.utils.params import Budget, Interval

#: DI shrinks an image to a random size in ``[DI_RESIZE * size, size)`` before padding it back.
DI_RESIZE = 0.9


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def resize_and_pad(x: torch.Tensor, size_h: torch.Tensor, size_w: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Per image: bilinear resize to ``size_h x size_w`` placed at ``(top, left)`` on a zero canvas of ``x``'s size.

    All arguments but ``x`` are integer tensors of length ``N`` (on any device); differentiable in ``x``.
    """
    n, _, h, w = x.shape
    sh, sw = size_h.to(x.device, x.dtype), size_w.to(x.device, x.dtype)
    t, lft = top.to(x.device, x.dtype), left.to(x.device, x.dtype)
    # output pixel j (normalised u = (2j+1)/W - 1) reads input at (2(j - left) + 1)/size - 1
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = w / sw
    theta[:, 0, 2] = (w - 2 * lft) / sw - 1
    theta[:, 1, 1] = h / sh
    theta[:, 1, 2] = (h - 2 * t) / sh - 1
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def input_diversity(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """DI: with probability ``prob`` per image, shrink to a random size in ``[0.9 W, W)`` and pad back at a random offset."""
    n, _, h, w = x.shape
    low = max(int(w * DI_RESIZE), 1)
    size_w = torch.randint(low, max(w, low + 1), (n,), generator=gen).clamp(max=w)
    size_h = (size_w * h / w).round().long().clamp(1, h)
    top = (torch.rand(n, generator=gen) * (h - size_h + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - size_w + 1)).long()
    use = (torch.rand(n, generator=gen) < prob).to(x.device)
    return torch.where(_per_image(use), resize_and_pad(x, size_h, size_w, top, left), x)


@register_attack(labels={"mifgsm": "MI-FGSM", "dimifgsm": "DI-MI-FGSM"}, transfers=True, norm="linf")
class MIFGSM(Attack):
    """Untargeted momentum iterative FGSM in the Linf ball, with optional input diversity.

    Args:
        eps: Linf radius (the paper's FGSM budget 0.02, about 5/255).
        steps: iterations, each of size ``eps / steps`` (Dong et al.: 10).
        decay: momentum decay factor ``mu`` (Dong et al.: 1.0).
        di_prob: probability, per image and step, of the input-diversity transform (0 = plain
            MI-FGSM; 0.5 = DI-MI-FGSM, Xie et al.).
        seed: seed of the input-diversity draws.
    """

    name = "mifgsm"
    params = {"eps": Budget(), "steps": Interval(1, integer=True), "decay": Interval(0), "di_prob": Interval(0, 1)}

    def __init__(self, eps: float = PAPER_EPS, steps: int = 10, decay: float = 1.0, di_prob: float = 0.0, seed: int = 0) -> None:
        self.eps = budget_value(eps)
        self.steps = int(steps)
        self.decay = float(decay)
        self.di_prob = float(di_prob)
        self.seed = int(seed)

    @property
    def label(self) -> str:
        """``mifgsm``, or ``dimifgsm`` with input diversity (the name :class:`DIMIFGSM` is registered under)."""
        return "dimifgsm" if self.di_prob > 0 else "mifgsm"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``steps`` signed steps of ``eps / steps`` along the accumulated, L1-normalised gradient."""
        gen = torch.Generator().manual_seed(self.seed)
        step = self.eps / self.steps
        g = torch.zeros_like(x)
        x_adv = x.clone()
        for _ in range(self.steps):
            x_var = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                inputs = input_diversity(x_var, self.di_prob, gen) if self.di_prob > 0 else x_var
                loss = nn.functional.cross_entropy(model(inputs), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_var)
            g = self.decay * g + grad / _per_image(grad.abs().flatten(1).mean(dim=1).clamp_min(1e-12))
            x_adv = x + (x_adv + step * g.sign() - x).clamp(-self.eps, self.eps)
            x_adv = x_adv.clamp(0, 1)
        return x_adv, {}


# "di-mifgsm": the label of results written before the name was made one (rows of older runs)
@register_attack(labels={"dimifgsm": "DI-MI-FGSM", "di-mifgsm": "DI-MI-FGSM"}, transfers=True, norm="linf")
class DIMIFGSM(MIFGSM):
    """DI-MI-FGSM (Xie et al. 2019): MI-FGSM with input diversity on by default (``di_prob`` 0.5).

    Args:
        eps: Linf radius (the paper's FGSM budget 0.02, about 5/255).
        steps: iterations, each of size ``eps / steps`` (Dong et al.: 10).
        decay: momentum decay factor ``mu`` (Dong et al.: 1.0).
        di_prob: probability, per image and step, of the input-diversity transform (Xie et al.: 0.5).
        seed: seed of the input-diversity draws.
    """

    name = "dimifgsm"
    aliases = ("di-mifgsm",)  # a config may name it as the report used to print it

    def __init__(self, eps: float = PAPER_EPS, steps: int = 10, decay: float = 1.0, di_prob: float = 0.5, seed: int = 0) -> None:
        super().__init__(eps=eps, steps=steps, decay=decay, di_prob=di_prob, seed=seed)
