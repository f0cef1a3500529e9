"""Square Attack (Andriushchenko et al. 2020): a score-based black box, Linf or L2, by random search.

The attack only queries the model's logits (no gradients), so it also runs on detectors whose
gradients are masked or absent. It minimises the margin loss ``Z_y - max_{i != y} Z_i``:

* query 1 is the clean image; an image the model already misclassifies stops there;
* query 2 is the initial point: vertical stripes of ``+-eps`` (Linf) or a 5 x 5 grid of the
  paper's centred-square patterns scaled to the ``eps`` sphere (L2);
* each further query changes one square window per image, at a random position of the image,
  whose side follows the paper's schedule of ``p`` (the share of pixels changed: ``p_init``,
  halved at 10, 50, 200, 500, 1k, 2k, 4k, 6k, 8k iterations of a 10k budget, rescaled to
  ``queries`` as in AutoAttack). Linf sets the window to ``+-eps`` per channel; L2 moves mass
  of the perturbation into the window from a second random window.

A candidate is kept only when it lowers the margin or is misclassified, so an image's margin
never increases after the initial point. Each image stops at its first misclassification and
spends no more queries; ``queries`` counts every forward pass of an image, the clean one
included, and never exceeds the budget. Windows, signs and pattern orientations are drawn per
image from the attack's seeded generator, batched over images.

Differences from AutoAttack's ``square.py``, on purpose: window positions and signs per image
(AutoAttack draws one window position per batch), positions cover the last row and column,
a Linf window that would not change the image is redrawn (as in the authors' own code), and
the clean query is counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from dfrobust.attacks.base import Attack, budget_value, register_attack
from dfrobust.constants import PAPER_EPS
from dfrobust.utils.params import Budget, Interval, StrOptions
from dfrobust.utils.runtime import progress

NORMS = ("linf", "l2")
#: Radius used when ``eps`` is not given (as :mod:`dfrobust.attacks.apgd`).
DEFAULT_EPS = {"linf": PAPER_EPS, "l2": 0.5}
#: Iterations (of a 10,000-query budget) after which ``p`` halves; AutoAttack's schedule.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Redraws of a Linf window's signs that would leave the image unchanged.
REDRAWS = 10

#: ``on_step(iteration, rows, margin, accepted)``: called after every random-search query with
#: the global indices of the images queried, their best margin loss after the step, and which
#: candidates were accepted.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def p_schedule(iteration: int, queries: int, p_init: float) -> float:
    """Share of the pixels a window covers at ``iteration`` (0-based) of a ``queries`` budget."""
    it = int(iteration / queries * 10000)
    return p_init / 2 ** sum(it > t for t in P_HALVINGS)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{i != y} Z_i`` per row: the quantity Square minimises."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)


def _centred_squares(rows: int, cols: int) -> torch.Tensor:
    """``rows x cols``: sum over nested squares around the centre of ``1 / (k + 1)^2``, unit L2 norm."""
    if rows == 0:
        return torch.zeros(0, cols)
    ci, cj = rows // 2, cols // 2
    n_rings = max(ci, cj) + 1
    dist = torch.maximum((torch.arange(rows)[:, None] - ci).abs(), (torch.arange(cols)[None, :] - cj).abs())
    weights = 1.0 / torch.arange(1, n_rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} 1 / (k + 1)^2
    pattern = tail[dist]
    return (pattern / pattern.norm()).float()


def square_pattern(s: int) -> torch.Tensor:
    """The L2 window pattern ``eta`` of the paper: ``s x s``, positive top half, negative bottom half, unit norm."""
    pattern = torch.cat([_centred_squares(s // 2, s), -_centred_squares(s - s // 2, s)])
    return pattern / pattern.norm()


def _window_mask(top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """``N x 1 x h x w`` boolean masks of the ``s x s`` window at ``(top, left)`` of each image."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + s)
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + s)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _window_index(top: torch.Tensor, left: torch.Tensor, s: int, c: int) -> tuple[torch.Tensor, ...]:
    """Advanced-indexing tuple selecting the ``N x c x s x s`` window at ``(top, left)`` of each image."""
    n, dev = len(top), top.device
    offs = torch.arange(s, device=dev)
    return (
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        (top[:, None] + offs)[:, None, :, None],
        (left[:, None] + offs)[:, None, None, :],
    )


@register_attack(access="score")
class Square(Attack):
    """Untargeted Square Attack (score-based random search) in the Linf or L2 ball.

    Args:
        eps: radius of the ball (default 0.02 for ``linf``, the paper's FGSM budget; 0.5 for ``l2``).
        norm: ``linf`` or ``l2``.
        queries: model queries per image at most, the clean one included (Andriushchenko et al.: 5,000).
        p_init: share of the image the first windows cover (0.8); it halves on the paper's schedule.
        seed: seed of the initial point, the windows and their signs.

    Extras in the result (per image): ``queries`` (forward passes spent on the image),
    ``margin`` (``max_{i != y} Z_i - Z_y`` of the returned image, positive when fooled).

    Set the attribute ``on_step`` to a :data:`StepCallback` to watch the search (tests use it).
    """

    name = "square"
    params = {
        "eps": Budget(norm_param="norm", optional=True),
        "norm": StrOptions(*NORMS),
        "queries": Interval(1, integer=True),
        "p_init": Interval(0, 1, lo_open=True),
    }
    on_step: StepCallback | None = None

    def __init__(
        self,
        eps: float | None = None,
        norm: Literal["linf", "l2"] = "linf",
        queries: int = 5000,
        p_init: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.eps = budget_value(DEFAULT_EPS[norm] if eps is None else eps, norm)
        self.norm = norm
        self.queries = int(queries)
        self.p_init = float(p_init)
        self.seed = int(seed)

    @property
    def label(self) -> str:
        """``square-linf`` or ``square-l2``."""
        return f"square-{self.norm}"

    def _query(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin loss and misclassification of a batch (one query per image)."""
        logits = model(x)
        return margin_loss(logits, y), logits.argmax(1) != y

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Random search, one window per image per query, until each image is fooled or out of queries."""
        n, c, h, w = x.shape
        dev = x.device
        gen = torch.Generator().manual_seed(self.seed)
        used = torch.ones(n, dtype=torch.long, device=dev)
        with torch.no_grad():
            margin, fooled = self._query(model, x, y)
            x_best = x.clone()
            if self.queries >= 2:
                # drawn for the whole batch, so an image's start does not depend on the others
                start = self._init_delta(x.shape, gen).to(dev, x.dtype)
                rows = (~fooled).nonzero().squeeze(1)
                if len(rows):
                    x_init = (x[rows] + start[rows]).clamp(0, 1)
                    margin[rows], fooled[rows] = self._query(model, x_init, y[rows])
                    x_best[rows] = x_init
                    used[rows] += 1
            iterations = max(self.queries - 2, 0)
            bar = progress(total=iterations, desc=f"Square-{self.norm}", unit="query")
            for it in range(iterations):
                rows = (~fooled).nonzero().squeeze(1)
                if len(rows) == 0:
                    break
                p = p_schedule(it, self.queries, self.p_init)
                x_r, best_r = x[rows], x_best[rows]
                if self.norm == "linf":
                    cand = self._linf_candidate(x_r, best_r, p, gen, n, rows)
                else:
                    cand = self._l2_candidate(x_r, best_r, p, gen, n, rows)
                m_new, mis_new = self._query(model, cand, y[rows])
                used[rows] += 1
                accept = (m_new < margin[rows]) | mis_new
                margin[rows] = torch.where(accept, m_new, margin[rows])
                x_best[rows] = torch.where(_per_image(accept), cand, best_r)
                fooled[rows] = mis_new
                if self.on_step is not None:
                    self.on_step(it, rows, margin[rows], accept)
                bar.update()
                if it % 50 == 0:
                    bar.set_postfix({"fooled (float images)": f"{int(fooled.sum())}/{n}"})  # before 8-bit rounding; runs count PNGs
            bar.close()
        return x_best, {"queries": used, "margin": -margin}

    # ----------------------------------------------------------------------------------------
    def _init_delta(self, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
        """The initial perturbation: Linf vertical stripes of ``+-eps``; L2 a grid of patterns on the sphere."""
        n, c, h, w = shape
        if self.norm == "linf":
            return self.eps * (torch.randint(0, 2, (n, c, 1, w), generator=gen) * 2 - 1).float().expand(shape).clone()
        s = max(min(h, w) // 5, 1)
        delta = torch.zeros(shape)
        pattern = square_pattern(s)
        for top in range((h - 5 * s) // 2, h - s + 1, s):
            for left in range((w - 5 * s) // 2, w - s + 1, s):
                signs = (torch.randint(0, 2, (n, c, 1, 1), generator=gen) * 2 - 1).float()
                flip = torch.rand(n, generator=gen) < 0.5
                eta = torch.where(_per_image(flip), pattern.T, pattern)
                delta[:, :, top : top + s, left : left + s] += eta * signs
        return self.eps * delta / _per_image(delta.flatten(1).norm(dim=1).clamp_min(1e-12))

    def _positions(self, gen: torch.Generator, n: int, rows: torch.Tensor, span: int) -> torch.Tensor:
        """Window offsets in ``[0, span]`` for all ``n`` images, kept for ``rows``."""
        return torch.randint(0, span + 1, (n,), generator=gen).to(rows.device)[rows]

    def _linf_candidate(
        self, x: torch.Tensor, best: torch.Tensor, p: float, gen: torch.Generator, n: int, rows: torch.Tensor
    ) -> torch.Tensor:
        """``best`` with one window per image set to ``x +- eps`` (a random sign per channel)."""
        _, c, h, w = x.shape
        s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
        mask = _window_mask(self._positions(gen, n, rows, h - s), self._positions(gen, n, rows, w - s), s, h, w)
        cand = best
        redo = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(REDRAWS):
            signs = (torch.randint(0, 2, (n, c, 1, 1), generator=gen) * 2 - 1).to(x.device, x.dtype)[rows]
            new = torch.where(mask, (x + self.eps * signs).clamp(0, 1), best)
            cand = torch.where(_per_image(redo), new, cand)
            redo = (cand == best).flatten(1).all(dim=1)
            if not redo.any():
                break
        return cand

    def _l2_candidate(
        self, x: torch.Tensor, best: torch.Tensor, p: float, gen: torch.Generator, n: int, rows: torch.Tensor
    ) -> torch.Tensor:
        """Move perturbation mass from a second window into a new pattern in the first (AutoAttack's L2 step)."""
        m, c, h, w = x.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = min(s + 1 if s % 2 == 0 else s, h, w)
        top1, left1 = self._positions(gen, n, rows, h - s), self._positions(gen, n, rows, w - s)
        top2, left2 = self._positions(gen, n, rows, h - s), self._positions(gen, n, rows, w - s)
        signs = (torch.randint(0, 2, (n, c, 1, 1), generator=gen) * 2 - 1).to(x.device, x.dtype)[rows]
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)[rows]

        delta = best - x
        win1 = _window_index(top1, left1, s, c)
        old = delta[win1]
        old = old / old.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12)
        union = _window_mask(top1, left1, s, h, w) | _window_mask(top2, left2, s, h, w)
        # per channel: the mass now in both windows, plus an equal share of what the ball still allows
        mass_windows = (delta * union).flatten(2).norm(dim=2)[..., None, None]
        room = (self.eps**2 - delta.flatten(1).pow(2).sum(1)).clamp_min(0)[:, None, None, None]
        pattern = square_pattern(s).to(x.device, x.dtype)
        eta = torch.where(flip[:, None, None, None], pattern.T, pattern)
        new = eta * signs + old
        new = new / new.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12) * (room / c + mass_windows**2).sqrt()
        delta[_window_index(top2, left2, s, c)] = 0
        delta[win1] = new
        delta = self.eps * delta / _per_image(delta.flatten(1).norm(dim=1).clamp_min(1e-12))
        return (x + delta).clamp(0, 1)
