"""Robustness curves: accuracy against APGD as the budget grows, per norm, with n and a Wilson 95% interval per point.

:func:`robustness_curve` computes one curve for images in memory; :func:`run_curves` is the
stage: it loads a dataset and a detector, computes every curve (Linf and L2 by default), runs
the gradient-masking checks of :mod:`dfrobust.studies.masking_checks` and writes::

    OUT/run.json           fingerprint of the run (config, data, model, images)
    OUT/parts/part-00002.csv  per-image outcome of one point, then its mark (utils/parts.py: resume and sharding unit)
    OUT/curves.csv         model, norm, eps, subset, n, accuracy, ci_low, ci_high
    OUT/summary.json       the rows, the checks' numbers, and ``warnings`` (strings)

Accuracy is measured as everywhere in dfrobust (one success definition, docs/architecture.md):
on the attacked images rounded to 8 bits, what storing them as PNG gives, not on the attack's
float images; eps 0 is clean accuracy and starts every curve.

Within one norm the radii are visited in increasing order and only the images still correct are
attacked at the next radius: an image fooled at radius r (or misclassified clean) is fooled at
every larger radius, since the same perturbation lies inside the larger ball, so it is counted as
fooled without attacking it again. Within one radius APGD stops on an image once it is fooled
(:data:`STOP_MARGIN`), the others following the same trajectory as without stopping. A curve is therefore monotone by construction, and each
point's per-image ``attacked`` flag (and ``summary.json``'s ``work``) says what was attacked.
The unit of work (and of resume and sharding) is one norm over one batch of ``batch_size``
images, attacked with seed ``seed + batch index`` at every radius, so rows do not depend on the
number of processes.

>>> rows = robustness_curve(model, x, y, "linf", [0, 2 / 255, 8 / 255], steps=20)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import attack_defaults, frozen_eval, make_attack, model_device
from dfrobust.studies.masking_checks import gradient_checks, monotone_check, weaker_beats_stronger
from dfrobust.constants import CLASS_NAMES
from dfrobust.data.layouts import CLASS_CHOICES, load_images
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.models.loading import load_model_arg
from dfrobust.utils.io import (
    claim_own_folder,
    quantize,
    read_csv,
    read_record,
    require_own_folder,
    sha256_bytes,
    to_json,
    write_csv,
    write_json,
)
from dfrobust.utils.parts import PartStore
from dfrobust.utils.runtime import progress, resolve_device, seed_everything, versions

#: The curves' APGD stops on an image once it is misclassified (also as stored in 8 bits): a curve counts
#: fooled images, so further steps on one change nothing (the others follow the same trajectory).
STOP_MARGIN = 0.0
#: Budgets of the curves (the issue's: Linf {0, 1, 2, 4, 8, 16}/255, L2 {0.25, 0.5, 1, 2}); eps 0 is added to each.
DEFAULT_NORMS: dict[str, tuple[float, ...]] = {
    "linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    "l2": (0.25, 0.5, 1.0, 2.0),
}
CURVE_COLUMNS = ("model", "norm", "eps", "subset", "n", "accuracy", "ci_low", "ci_high")


def attack_success(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, params: Mapping[str, Any], seed: int = 0, batch_size: int = 32
) -> torch.Tensor:
    """Per image (CPU bool): whether ``attack`` with ``params`` fooled ``model``; batch ``k`` is attacked with seed ``seed + k``.

    Judged as the attack stage judges: ``model`` re-evaluated on the attacked image rounded to 8 bits (a stored PNG),
    not the attack's own verdict on its float image. Parameters the attack does not take (``norm`` for FGSM) are
    dropped, so one call shape fits every attack.
    """
    known = attack_defaults(attack)
    kept = {k: v for k, v in params.items() if k in known}
    out = []
    for k, start in enumerate(range(0, len(x), batch_size)):
        extra = {"seed": seed + k} if "seed" in known else {}
        result = make_attack(attack, **kept, **extra)(model, x[start : start + batch_size], y[start : start + batch_size])
        rounded = quantize(result.x_adv)  # rounding can undo a flip: the stored image is what counts
        out.append(~clean_correct(model, rounded, y[start : start + batch_size], batch_size))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


@torch.no_grad()
def clean_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Per image (CPU bool): the model's argmax equals the label."""
    device = model_device(model)
    with frozen_eval(model):
        preds = [model(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return (torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)) == y.cpu()


def point_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, attack: str = "apgd",
    steps: int = 100, seed: int = 0, batch_size: int = 32,
) -> torch.Tensor:  # fmt: skip
    """Per image (CPU bool): still correctly classified under ``attack`` at budget ``eps`` (clean when ``eps`` is 0)."""
    if eps == 0:
        return clean_correct(model, x, y, batch_size)
    return ~attack_success(model, x, y, attack, {"eps": eps, "norm": norm, "steps": steps}, seed, batch_size)


def rate_row(correct: torch.Tensor, **head: Any) -> dict[str, Any]:
    """``head`` plus ``n``, ``accuracy``, ``ci_low``, ``ci_high`` (Wilson 95%) of per-image outcomes."""
    n, k = len(correct), int(torch.as_tensor(correct).sum())
    lo, hi = wilson_interval(k, n)
    return {**head, "n": n, "accuracy": k / n if n else math.nan, "ci_low": lo, "ci_high": hi}


def chain_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps_list: Sequence[float], attack: str = "apgd",
    steps: int = 100, seed: int = 0, stop_margin: float | None = STOP_MARGIN,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per radius and image (CPU bool ``len(eps_list) x N``): still correct, and attacked at that radius.

    ``eps_list`` must increase. Radius 0 is clean accuracy (every image evaluated, none attacked);
    at each larger radius only the images still correct are attacked (one batch, ``seed``), and the
    others stay fooled: a perturbation that fooled an image lies inside every larger ball.
    ``stop_margin`` goes to attacks that take it (:mod:`dfrobust.attacks.early_stop`).
    """
    eps_values = [float(e) for e in eps_list]
    if eps_values != sorted(eps_values):
        raise DfrobustError(f"chained radii must increase, got {eps_values}")
    n = len(x)
    correct = torch.zeros(len(eps_values), n, dtype=torch.bool)
    attacked = torch.zeros(len(eps_values), n, dtype=torch.bool)
    still = torch.ones(n, dtype=torch.bool)
    for i, eps in enumerate(eps_values):
        if eps == 0:
            still &= clean_correct(model, x, y, max(n, 1))
        elif still.any():
            rows = still.nonzero().squeeze(1)
            attacked[i, rows] = True
            params = {"eps": eps, "norm": norm, "steps": steps, "stop_margin": stop_margin}
            fooled = attack_success(model, x[rows], y[rows], attack, params, seed, len(rows))
            still[rows[fooled]] = False
        correct[i] = still
    return correct, attacked


def robustness_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    eps_list: Sequence[float],
    attack: str = "apgd",
    steps: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    reuse: bool = True,
) -> list[dict[str, Any]]:
    """Accuracy of ``model`` on ``x`` under ``attack`` at each budget: rows ``norm, eps, n, accuracy, ci_low, ci_high, attacked``.

    With ``reuse`` (the default) the budgets are visited in increasing order and batch ``k`` of
    ``batch_size`` images (seed ``seed + k``) is attacked at a budget only where it survived the
    smaller ones, and the attack stops on an image once it is fooled (:func:`chain_correct`); without
    it, every budget attacks every image afresh for every step.
    ``attacked`` counts the images attacked at the budget. Rows come in the order of ``eps_list``.
    """
    if norm not in ("linf", "l2"):
        raise DfrobustError(f"a curve's norm must be linf or l2, got {norm!r}")
    if not reuse:
        rows = []
        for eps in eps_list:
            correct = point_correct(model, x, y, norm, float(eps), attack, steps, seed, batch_size)
            rows.append(rate_row(correct, norm=norm, eps=float(eps), attacked=len(x) if eps > 0 else 0))
        return rows
    order = sorted({float(e) for e in eps_list})
    parts = [chain_correct(model, x[s : s + batch_size], y[s : s + batch_size], norm, order, attack, steps, seed + k)
             for k, s in enumerate(range(0, len(x), batch_size))]  # fmt: skip
    correct = torch.cat([c for c, _ in parts], dim=1) if parts else torch.zeros(len(order), 0, dtype=torch.bool)
    attacked = torch.cat([a for _, a in parts], dim=1) if parts else torch.zeros(len(order), 0, dtype=torch.bool)
    at = {e: i for i, e in enumerate(order)}
    return [rate_row(correct[at[float(e)]], norm=norm, eps=float(e), attacked=int(attacked[at[float(e)]].sum())) for e in eps_list]


def _subsets(y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``all`` images and, when both classes are present, each class (by its name) as masks."""
    out = {"all": torch.ones(len(y), dtype=torch.bool)}
    present = sorted(set(int(v) for v in y))
    if len(present) > 1:
        for label in present:
            out[CLASS_NAMES[label]] = y == label
    return out


def _plan(norms: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Every radius to compute per norm, increasing, eps 0 first, duplicates dropped."""
    points = {}
    for norm, eps_list in norms.items():
        if norm not in ("linf", "l2"):
            raise DfrobustError(f"curve norms are linf and l2, got {norm!r}")
        values = sorted({0.0, *(float(e) for e in eps_list)})
        if values[0] < 0:
            raise DfrobustError(f"curve budgets must be >= 0, got {values[0]} for {norm}")
        points[norm] = values
    return points


def run_curves(
    data_dir: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    norms: Mapping[str, Sequence[float]] | None = None,
    max_images: int | None = None,
    classes: str = "both",
    seed: int = 0,
    device: str = "auto",
    steps: int = 100,
    batch_size: int = 32,
    fgsm_check: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Robustness curves of one detector on a dataset's test images, with the gradient-masking checks.

    Args:
        data_dir: dataset folder (its ``test`` split) or any layout ``load_images`` reads.
        model_path: the detector (checkpoint or card).
        out_dir: output folder (module docstring); a finished run is returned as it is.
        norms: ``{"linf": [eps...], "l2": [eps...]}`` (default :data:`DEFAULT_NORMS`); eps 0 is added.
        max_images: a seeded subset of at most this many images.
        classes: ``fake``, ``real`` or ``both`` (rows per class and for ``all``).
        seed: seeds the subset and the attacks.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        steps: APGD iterations per point.
        batch_size: images attacked together.
        fgsm_check: also run FGSM at each Linf budget and warn where it fools an image APGD did not.
        rank, world_size: this process's shard (the part store's seeded assignment of units: one norm over one batch).

    Returns:
        ``summary.json``'s content (``rows``, ``checks``, ``warnings``) once every point is done,
        else ``{"complete": False, ...}``.
    """
    if not 0 <= rank < world_size:
        raise DfrobustError(f"rank {rank} is outside 0..{world_size - 1}")
    if classes not in CLASS_CHOICES:
        raise DfrobustError(f"--classes must be one of {sorted(CLASS_CHOICES)}, got {classes!r}")
    if steps < 1 or batch_size < 1:
        raise DfrobustError(f"curves need steps >= 1 and batch_size >= 1, got {steps} and {batch_size}")
    radii = _plan(DEFAULT_NORMS if norms is None else norms)
    points = [(norm, eps) for norm, values in radii.items() for eps in values]
    out_dir = require_own_folder(out_dir, "curves", legacy=["run.json"])
    dev = resolve_device(device)
    seed_everything(seed)
    images, data_hash = load_images(data_dir, "test", CLASS_CHOICES[classes], limit=max_images, seed=seed)
    model, meta = load_model_arg(model_path, device=dev, expect_input_size=images.image_size)
    name = meta["name"]
    config = {"points": points, "classes": classes, "max_images": max_images, "seed": seed, "steps": steps,
              "batch_size": batch_size, "fgsm_check": fgsm_check, "attack": "apgd", "reuse": "smallest fooling radius", "stop_margin": STOP_MARGIN}  # fmt: skip
    fingerprint = sha256_bytes(to_json({"config": config, "data": data_hash, "model": meta["sha256"], "images": images.paths}).encode())
    summary_file = out_dir / "summary.json"
    if summary_file.is_file() and read_record(summary_file).get("fingerprint") == fingerprint:
        return read_record(summary_file)
    run_file = out_dir / "run.json"
    if run_file.is_file() and read_record(run_file).get("fingerprint") != fingerprint:
        raise DfrobustError(f"{out_dir} holds curves of another run (other settings, data or model); choose another --out or delete it")
    if not run_file.is_file():
        claim_own_folder(out_dir, "curves")
        write_json(run_file, {"fingerprint": fingerprint, "config": config})

    x, y = images.images(), images.y
    # unit k is norm k // n_batches over batch k % n_batches: its radii chained (CSV, then its mark)
    norm_names = list(radii)
    n_batches = max(math.ceil(len(x) / batch_size), 1)
    store = PartStore(out_dir / "parts", fingerprint, len(norm_names) * n_batches, 1, seed=seed, payloads=(".csv",))
    for unit in progress(store.todo(rank, world_size), desc=f"curves of {name}", unit="batch"):
        norm, b = norm_names[unit.index // n_batches], unit.index % n_batches
        sl = slice(b * batch_size, (b + 1) * batch_size)
        correct, attacked = chain_correct(model, x[sl], y[sl], norm, radii[norm], "apgd", steps, seed + b)
        part = []
        for i, eps in enumerate(radii[norm]):
            fooled = None
            if fgsm_check and norm == "linf" and eps > 0:  # one gradient per image: cheap, kept on every image
                fooled = attack_success(model, x[sl], y[sl], "fgsm", {"eps": eps}, seed + b, batch_size)
            for j, p in enumerate(images.paths[sl]):
                row = {"image": p, "label": int(y[sl][j]), "norm": norm, "eps": eps, "correct": int(correct[i, j]),
                       "attacked": int(attacked[i, j])}  # fmt: skip
                if fooled is not None:
                    row["fgsm_success"] = int(fooled[j])
                part.append(row)
        write_csv(store.path(unit, ".csv"), part)
        store.finish(unit, rank, world_size)  # the mark, last
    if not store.complete():
        return {"complete": False, "units_done": len(store.done()), "units_total": len(store.units), "out_dir": str(out_dir)}

    by_point: dict[tuple[str, float], list[dict[str, Any]]] = {pt: [] for pt in points}
    for unit in store.units:  # unit order: norms, then batches in image order
        for r in read_csv(store.path(unit, ".csv")):
            by_point[(r["norm"], float(r["eps"]))].append(r)
    rows, weaker, work = [], [], []
    subsets = _subsets(y)
    for norm, eps in points:
        part = by_point[(norm, eps)]
        correct = torch.tensor([int(r["correct"]) for r in part], dtype=torch.bool)
        for subset, mask in subsets.items():
            rows.append(rate_row(correct[mask], model=name, norm=norm, eps=eps, subset=subset))
        if eps > 0:
            work.append({"norm": norm, "eps": eps, "n": len(part), "attacked": sum(int(r["attacked"]) for r in part)})
        if part and part[0].get("fgsm_success", "") != "":
            fgsm = torch.tensor([int(r["fgsm_success"]) for r in part], dtype=torch.bool)
            weaker.append({"norm": norm, "eps": eps, **weaker_beats_stronger(fgsm, ~correct, f"{name} {norm} eps {eps:.4g}")})
    write_csv(out_dir / "curves.csv", rows, CURVE_COLUMNS)
    grads = gradient_checks(model, x, y, batch_size)
    monotone = monotone_check(rows)
    warnings = [*grads["warnings"], *monotone["warnings"], *(w for c in weaker for w in c["warnings"])]
    summary = {
        "complete": True,
        "fingerprint": fingerprint,
        "model": {name: {"path": str(model_path), "sha256": meta["sha256"]}},
        "dataset": {"path": str(data_dir), "manifest_hash": data_hash, "split": "test", "classes": CLASS_CHOICES[classes],
                    "n_images": len(images), "image_size": list(images.image_size)},
        "config": config,
        "rows": rows,
        "checks": {"gradients": grads, "monotone": monotone, "fgsm_vs_apgd": weaker},
        # images attacked per radius > 0 (the others were fooled at a smaller radius): n - attacked is the saving
        "work": {"attacked": sum(w["attacked"] for w in work), "all_images": sum(w["n"] for w in work), "points": work},
        "warnings": warnings,
        "versions": versions(),
    }  # fmt: skip
    write_json(summary_file, summary)
    return summary
