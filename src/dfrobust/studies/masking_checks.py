"""Runtime checks for gradient masking, in the spirit of AutoAttack's ``checks.py``.

Each check returns its numbers and a list of ``warnings`` (one-line strings that say what was
seen and what it may mean); an empty list means the check passed. They are signs, not proofs:
a gradient-based robustness number next to any of them is likely too optimistic, and a
gradient-free attack (Square) or an adaptive one should be run.

>>> gradient_checks(model, x, y)["warnings"]  # doctest: +SKIP
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import frozen_eval, model_device

#: Largest change of the L2-normalised logits between two forwards of the same images still taken as deterministic.
DETERMINISM_TOL = 1e-5


def gradient_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32) -> dict[str, Any]:
    """Input gradients of the cross-entropy per image (zero or non-finite?) and whether two forwards agree.

    Returns ``n``, ``zero_grad`` / ``zero_grad_share`` (images whose gradient is exactly 0
    everywhere: a saturated softmax or a step function such as rounding in the model),
    ``nonfinite_grad`` / ``nonfinite_grad_share``, ``deterministic`` and ``max_output_diff``
    (of the L2-normalised logits between two forwards), and ``warnings``.
    """
    device = model_device(model)
    zero = nonfinite = 0
    max_diff = 0.0
    n = len(x)
    with frozen_eval(model):
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].detach().to(device).requires_grad_(True)
            yb = y[start : start + batch_size].to(device)
            with torch.enable_grad():
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xb)
            flat = grad.flatten(1)
            finite = torch.isfinite(flat).all(1)
            nonfinite += int((~finite).sum())
            zero += int((finite & (flat == 0).all(1)).sum())
            with torch.no_grad():
                first = logits.detach().float()
                second = model(xb.detach()).float()
            unit = [t / (t.norm(dim=1, keepdim=True) + 1e-10) for t in (first, second)]
            max_diff = max(max_diff, float((unit[0] - unit[1]).abs().max()) if len(xb) else 0.0)
    deterministic = max_diff <= DETERMINISM_TOL
    warnings = []
    if zero:
        warnings.append(
            f"the input gradient is exactly zero for {zero} of {n} images ({zero / n:.0%}): a saturated softmax or a "
            "non-differentiable step in the model; gradient attacks cannot move these images (gradient masking)"
        )
    if nonfinite:
        warnings.append(
            f"the input gradient is NaN or infinite for {nonfinite} of {n} images ({nonfinite / n:.0%}): gradient attacks are unreliable here"
        )
    if not deterministic:
        warnings.append(
            f"the model's output is not deterministic (two forwards of the same images differ by up to {max_diff:.2g} "
            "in normalised logits): a randomised defense needs EOT and worst-of-N evaluation"
        )
    return {
        "n": n,
        "zero_grad": zero,
        "zero_grad_share": zero / n if n else 0.0,
        "nonfinite_grad": nonfinite,
        "nonfinite_grad_share": nonfinite / n if n else 0.0,
        "deterministic": deterministic,
        "max_output_diff": max_diff,
        "warnings": warnings,
    }


def monotone_check(curve_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy must not rise with eps: each curve (rows sharing ``model``, ``norm`` and ``subset``) is checked.

    Rows carry ``norm``, ``eps``, ``accuracy`` and optionally ``model``, ``subset`` and ``n``.
    Returns ``violations`` (``model``, ``norm``, ``subset``, ``eps_low``, ``eps_high``,
    ``accuracy_low``, ``accuracy_high``) and ``warnings``.
    """
    curves: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for r in curve_rows:
        key = (str(r.get("model", "")), str(r["norm"]), str(r.get("subset", "")))
        curves.setdefault(key, []).append((float(r["eps"]), float(r["accuracy"])))
    violations, warnings = [], []
    for (model, norm, subset), points in curves.items():
        points.sort()
        for (e0, a0), (e1, a1) in zip(points, points[1:]):
            if a1 > a0:
                violations.append({"model": model, "norm": norm, "subset": subset, "eps_low": e0, "eps_high": e1,
                                   "accuracy_low": a0, "accuracy_high": a1})  # fmt: skip
                where = " ".join(p for p in (model, norm, subset) if p)
                warnings.append(
                    f"{where}: accuracy rises from {a0:.1%} at eps {e0:.4g} to {a1:.1%} at eps {e1:.4g}; a larger ball "
                    "contains the smaller one, so the attack is not finding what exists (gradient masking or too few steps)"
                )
    return {"violations": violations, "warnings": warnings}


def weaker_beats_stronger(
    fgsm_success: torch.Tensor | Sequence[bool], apgd_success: torch.Tensor | Sequence[bool], label: str = ""
) -> dict[str, Any]:
    """Images that FGSM fooled but APGD (same eps, same images) did not: the stronger attack's gradient is misleading.

    ``label`` (e.g. ``linf eps 0.0157``) prefixes the warning. Returns ``n``, ``count``,
    ``share`` (of all images), ``indices`` and ``warnings``.
    """
    weak = torch.as_tensor(fgsm_success, dtype=torch.bool).flatten().cpu()
    strong = torch.as_tensor(apgd_success, dtype=torch.bool).flatten().cpu()
    if weak.shape != strong.shape:
        raise ValueError(f"need one success flag per image from each attack, got {len(weak)} and {len(strong)}")
    beaten = weak & ~strong
    count, n = int(beaten.sum()), len(weak)
    warnings = []
    if count:
        prefix = f"{label}: " if label else ""
        warnings.append(
            f"{prefix}FGSM fooled {count} of {n} images that APGD did not ({count / n:.0%}); a one-step attack beating "
            "an iterative one is a sign of gradient masking"
        )
    return {"n": n, "count": count, "share": count / n if n else 0.0, "indices": beaten.nonzero().flatten().tolist(), "warnings": warnings}
