"""Adversarial training recipes: PGD-AT (Madry et al. 2018), fast AT (Wong et al. 2020), TRADES (Zhang et al. 2019).

Each recipe turns a clean batch into a training loss. The adversarial examples of ``pgd`` and
``fast`` come from the registered ``pgd`` attack (:mod:`dfrobust.attacks.pgd`), not a copy:

* ``pgd``: Linf PGD, ``adv_steps`` steps of ``eps / 4`` from a uniform random start, then
  cross-entropy on the adversarial batch. Example generation with BatchNorm on running
  statistics (eval mode), as Madry et al.'s ``robustness`` library does (``AttackerModel.forward``
  switches to ``eval()`` while it makes the examples).
* ``fast``: one signed step of ``1.25 eps`` from a uniform random start in the Linf ball, projected
  back onto it and onto ``[0, 1]`` (``pgd`` with one step), then cross-entropy on it. Example
  generation in train mode, as Wong et al.'s ``train_fgsm.py`` (the model stays in ``train()``).
* ``trades``: the inner maximisation of ``KL(f(x) || f(x'))`` (``adv_steps`` signed steps of
  ``eps / 4`` from ``x + 0.001 N(0, 1)``) in eval mode, as TRADES' ``trades_loss`` (``model.eval()``),
  then ``CE(f(x), y) + beta KL(f(x) || f(x'))`` in train mode. TRADES' own CIFAR setting is 10
  steps of 0.007 at eps 0.031; we take ``eps / 4`` and the same step count as PGD-AT (7) so the
  two cost the same.

Against collapse (a detector fine-tuned at the full radius can fall to a constant class: the
fakes' cue is small and the adversarial examples hide it; TRIM, arXiv 2505.22604), two settings
of :class:`~dfrobust.train.config.TrainConfig`: ``adv_ramp_epochs`` grows the radius linearly
from 0 over the first epochs (:meth:`AdversarialRecipe.at_progress`), and ``adv_clean_weight``
mixes the clean cross-entropy into ``pgd``/``fast``'s loss (one forward pass over the clean and
adversarial batch). Model selection puts a collapsed epoch last
(:func:`dfrobust.evaluate.collapse.collapsed` on the validation metrics), since a constant
predictor has the best held-out robust accuracy of all. Two more guards act on selection
(:mod:`dfrobust.train.selection`): ``adv_max_clean_drop`` keeps only epochs within that much
validation accuracy of the start model, and ``adv_calibrate`` judges (and keeps) each epoch at the
threshold of best validation accuracy (:mod:`dfrobust.train.calibration`).

The per-batch randomness (random starts) is drawn from the epoch's CPU generator, so a resumed run
draws what an uninterrupted one would.

Under DistributedDataParallel each process makes the examples of its slice of the global batch
on the bare model (no DDP collectives in the inner loop; the weights are frozen there anyway)
and the loss goes through the DDP model. TRADES' start noise is drawn for the global batch and
sliced, as one process would draw it. The random starts of ``pgd`` and ``fast`` are made by the
``pgd`` attack from one seed per batch: a process's slice gets the seed plus its offset in the
global batch, so the slices' starts are independent but, beyond the first slice, not those of a
one-process run (equal in distribution, not bit for bit).

Catastrophic overfitting (Wong et al.: PGD accuracy collapsing while FGSM accuracy rises, the
known failure of FGSM training) is watched by :func:`robustness_check` on a fixed held-out batch
after every epoch and flagged by :func:`collapsed`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.attacks.base import Attack, frozen_eval, make_attack
from dfrobust.errors import DfrobustError

#: Adversarial-training methods of ``TrainConfig.adversarial``.
METHODS = ("pgd", "fast", "trades")

#: BatchNorm mode while the adversarial examples are made, per method (see the module docstring).
EXAMPLE_BATCHNORM = {"pgd": "eval", "fast": "train", "trades": "eval"}

#: Images of the held-out batch (from the validation split) the robustness check attacks every epoch.
CHECK_IMAGES = 128

#: PGD accuracy below this fraction of its best, with FGSM accuracy above its value at that best, is a collapse.
COLLAPSE_FRACTION = 0.5

#: Fast AT's step as a multiple of eps (Wong et al.: alpha = 1.25 eps).
FAST_STEP = 1.25

#: Edge (pixels, the smaller side) from which the default eps is the ImageNet-scale one.
LARGE_IMAGE = 128


def default_eps(image_size: tuple[int, int]) -> float:
    """Linf radius when none is given: 4/255 for images of 128 px or more (ImageNet scale), 8/255 below (CIFAR)."""
    return 4 / 255 if min(image_size) >= LARGE_IMAGE else 8 / 255


def _draw_seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


@dataclass(frozen=True)
class AdversarialRecipe:
    """One adversarial-training method with its resolved parameters.

    Attributes:
        method: ``pgd``, ``fast`` or ``trades``.
        eps: Linf radius in ``[0, 1]`` pixel units.
        eps_source: ``"given"`` or ``"image size"`` (the default by :func:`default_eps`).
        steps: inner-maximisation steps (1 for ``fast``).
        step_size: step length of the inner maximisation.
        beta: TRADES' weight of the KL term (``None`` for the others).
        check_steps: PGD steps of the per-epoch robustness check.
        clean_weight: ``pgd``/``fast``: weight of the clean cross-entropy beside the adversarial one.
        ramp_epochs: epochs over which the radius grows from 0 to ``eps`` (0: none).
        full_eps: the radius the ramp ends at (``eps`` itself outside the ramp).
    """

    method: str
    eps: float
    eps_source: str
    steps: int
    step_size: float
    beta: float | None
    check_steps: int
    clean_weight: float = 0.0
    ramp_epochs: float = 0.0
    full_eps: float | None = None

    def settings(self) -> dict[str, Any]:
        """What the sidecar records (``adversarial`` section, before the measured cost)."""
        return {
            "method": self.method,
            "eps": self.eps,
            "eps_source": self.eps_source,
            "steps": self.steps,
            "step_size": self.step_size,
            "beta": self.beta,
            "clean_weight": self.clean_weight,
            "ramp_epochs": self.ramp_epochs,
            "example_batchnorm": EXAMPLE_BATCHNORM[self.method],
            "check": {"images": CHECK_IMAGES, "pgd_steps": self.check_steps, "pgd_step_size": self.radius / 4},
        }

    @property
    def radius(self) -> float:
        """The full training radius (``eps`` once the ramp is over)."""
        return self.eps if self.full_eps is None else self.full_eps

    def at_progress(self, epochs_done: float | None) -> AdversarialRecipe:
        """This recipe at a point of training (``epochs_done``: epochs finished, fractional): eps and step scaled by the ramp.

        ``None`` or a finished ramp: the full radius. Ramping the radius lets a detector fine-tuned
        from clean weights adapt before the examples hide its cue (TRIM, arXiv 2505.22604).
        """
        if epochs_done is None or self.ramp_epochs <= 0 or epochs_done >= self.ramp_epochs:
            return self
        factor = max(0.0, epochs_done) / self.ramp_epochs
        return replace(self, eps=self.radius * factor, step_size=self.step_size * factor, full_eps=self.radius)

    def attack(self, seed: int) -> Attack:
        """The registered ``pgd`` attack that makes this recipe's examples (``pgd`` and ``fast``)."""
        return make_attack("pgd", eps=self.eps, norm="linf", steps=self.steps, step_size=self.step_size, random_start=True, seed=seed)

    def examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                 rows: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
        """Adversarial versions of ``x`` (detached, in ``[0, 1]``), made in the method's BatchNorm mode.

        ``rows``: ``(offset, total)`` when ``x`` is rows ``offset ..`` of a global batch of ``total`` (DDP).
        """
        if self.method == "trades":
            return self._trades_examples(model, x, generator, rows)
        attack = self.attack(_draw_seed(generator) + (rows[0] if rows is not None else 0))
        mode = frozen_eval(model) if EXAMPLE_BATCHNORM[self.method] == "eval" else contextlib.nullcontext()
        with mode:
            x_adv, _ = attack.perturb(model, x.detach(), y)
        return x_adv.detach().clamp(0, 1)

    def _trades_examples(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator | None,
                         rows: tuple[int, int] | None = None) -> torch.Tensor:  # fmt: skip
        x = x.detach()
        offset, total = rows if rows is not None else (0, len(x))
        with frozen_eval(model):
            with torch.no_grad():
                p_clean = F.softmax(model(x).float(), dim=1)
            start = torch.randn((total, *x.shape[1:]), generator=generator)[offset : offset + len(x)].to(x.device, x.dtype)
            x_adv = (x + 0.001 * start).clamp(0, 1)
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = x_adv.detach() + self.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0, 1)
        return x_adv.detach()

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
        rows: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The training loss on a clean batch: ``(loss, logits, penalty)``.

        ``logits`` are those the cross-entropy is taken on (adversarial for ``pgd``/``fast``,
        clean for ``trades``); ``penalty`` is TRADES' KL term (``None`` otherwise). ``model`` may be
        a DistributedDataParallel wrapper (the examples are made on the module inside it);
        ``rows``: see :meth:`examples`.
        """
        x_adv = self.examples(getattr(model, "module", model), x, y, generator, rows)
        if self.method != "trades":
            if self.clean_weight == 0:
                logits = model(x_adv)
                return F.cross_entropy(logits.float(), y), logits, None
            both = model(torch.cat([x, x_adv]))  # one pass: BatchNorm sees the clean and adversarial batch together
            clean, logits = both[: len(x)], both[len(x) :]
            loss = self.clean_weight * F.cross_entropy(clean.float(), y) + (1 - self.clean_weight) * F.cross_entropy(logits.float(), y)
            return loss, logits, None
        logits = model(x)
        adv_logits = model(x_adv)
        kl = F.kl_div(F.log_softmax(adv_logits.float(), dim=1), F.softmax(logits.float(), dim=1), reduction="batchmean")
        return F.cross_entropy(logits.float(), y) + self.beta * kl, logits, kl


def recipe_for(cfg: Any, image_size: tuple[int, int], epochs_done: float | None = None) -> AdversarialRecipe | None:
    """The recipe of a :class:`~dfrobust.train.config.TrainConfig` for images of ``image_size`` (``None``: plain training).

    ``epochs_done`` (fractional epochs of this run finished): the recipe at that point of its
    radius ramp (:meth:`AdversarialRecipe.at_progress`); ``None``: at the full radius.
    """
    if cfg.adversarial is None:
        return None
    if cfg.adversarial not in METHODS:
        raise DfrobustError(f"unknown adversarial training {cfg.adversarial!r}; use one of {METHODS}")
    eps = float(cfg.adv_eps) if cfg.adv_eps is not None else default_eps(image_size)
    source = "given" if cfg.adv_eps is not None else "image size"
    ramp = float(getattr(cfg, "adv_ramp_epochs", 0.0))
    clean = float(getattr(cfg, "adv_clean_weight", 0.0)) if cfg.adversarial != "trades" else 0.0
    if cfg.adversarial == "fast":
        recipe = AdversarialRecipe("fast", eps, source, 1, FAST_STEP * eps, None, cfg.adv_steps, clean, ramp)
    else:
        beta = float(cfg.trades_beta) if cfg.adversarial == "trades" else None
        recipe = AdversarialRecipe(cfg.adversarial, eps, source, cfg.adv_steps, eps / 4, beta, cfg.adv_steps, clean, ramp)
    return recipe.at_progress(epochs_done)


def check_batch(n_images: int, seed: int) -> torch.Tensor:
    """Indices of the fixed held-out batch (a seeded subset of the validation split, at most :data:`CHECK_IMAGES`)."""
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))
    return order[:CHECK_IMAGES].sort().values


def robustness_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: AdversarialRecipe, seed: int) -> dict[str, float]:
    """Accuracy of ``model`` on one batch at the recipe's eps under PGD, APGD-CE and FGSM, and under all three at once.

    ``robust_accuracy`` counts an image only if every attack failed on it (the leaderboard's definition):
    selection by PGD accuracy alone can keep a gradient-masked epoch that PGD cannot flip and APGD can
    (benchmarks/RESULTS.md). Eval mode, registered attacks, APGD with PGD's step count.
    """
    pgd = make_attack(
        "pgd", eps=recipe.radius, norm="linf", steps=recipe.check_steps, step_size=recipe.radius / 4, random_start=True, seed=seed
    )
    apgd = make_attack("apgd", eps=recipe.radius, norm="linf", steps=recipe.check_steps, seed=seed)
    fgsm = make_attack("fgsm", eps=recipe.radius)
    fooled = {name: attack(model, x, y).success for name, attack in (("pgd", pgd), ("apgd", apgd), ("fgsm", fgsm))}
    result = {f"{name}_accuracy": 1.0 - hit.float().mean().item() for name, hit in fooled.items()}
    result["robust_accuracy"] = 1.0 - torch.stack(list(fooled.values())).any(0).float().mean().item()
    return result


def collapsed(check: dict[str, float], best: dict[str, float] | None) -> bool:
    """Whether ``check`` shows catastrophic overfitting against the epoch of best PGD accuracy so far.

    PGD accuracy below :data:`COLLAPSE_FRACTION` of its best while FGSM accuracy is above its
    value at that best: the model has learnt to mask FGSM's gradient, not to resist PGD.
    """
    if best is None or best["pgd_accuracy"] <= 0:
        return False
    return check["pgd_accuracy"] < COLLAPSE_FRACTION * best["pgd_accuracy"] and check["fgsm_accuracy"] > best["fgsm_accuracy"]
