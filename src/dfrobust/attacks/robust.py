"""Transformation-robust attacks: any attack, its gradient averaged over draws of a platform chain (EOT).

Hussain, Neekhara et al. (WACV 2021) made adversarial deepfakes survive compression and resizing
by optimising through random draws of those transformations (Expectation over Transformation,
Athalye et al. 2018). :class:`RobustModel` is the detector seen through ``eot`` random draws of a
chain (:mod:`dfrobust.attacks.chain`): its logits are the mean over the draws, so every registered
attack run on it (FGSM, PGD, APGD, CW, ...) follows the EOT gradient, with the codecs' real
output in the forward pass and a straight-through gradient (BPDA):

>>> robust = RobustModel(model, parse_chain("jpeg:50-95,resize:0.5-1"), eot=8)  # doctest: +SKIP
>>> result = make_attack("fgsm", eps=4 / 255)(robust, x, y)                   # doctest: +SKIP

:func:`platform_scores` evaluates images after a chain (seeded per image), and
:func:`platform_experiment` compares the plain and the robust attack losslessly, after the chain
the robust attack saw and after a held-out chain it did not (writing ``summary.json`` and
``platform.csv``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.attacks.base import make_attack, model_device
from dfrobust.models.inference import eval_mode
from dfrobust.attacks.chain import Chain, apply_chain, apply_drawn, draw_params, format_chain, parse_chain
from dfrobust.constants import REAL
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.utils.io import quantize, write_csv, write_json


class RobustModel(nn.Module):
    """``model(T(x))`` averaged over ``eot`` random draws ``T`` of ``chain``; the gradient is the EOT average.

    Each forward draws fresh transformations from the module's own generator (seeded with
    ``seed``), one per image and draw (draw-major rows, as :class:`~dfrobust.defenses.adaptive.PurifiedModel`),
    and returns the mean logits over the draws. The codecs' gradient is the identity's.

    Args:
        model: the detector (2 logits).
        chain: the transformations (:func:`~dfrobust.attacks.chain.parse_chain`).
        eot: draws per forward pass.
        seed: seed of the stream of draws.
    """

    def __init__(self, model: nn.Module, chain: Chain, eot: int = 8, seed: int = 0) -> None:
        super().__init__()
        if eot < 1:
            raise DfrobustError(f"--robust-eot must be >= 1, got {eot}")
        if not chain:
            raise DfrobustError("a robust attack needs a chain of at least one step (--robust-to)")
        self.model = model
        self.chain = chain
        self.eot = int(eot)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.forwards = 0  #: forward passes so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logits over ``eot`` draws of the chain on ``x``."""
        n = len(x)
        xs = x if self.eot == 1 else x.repeat(self.eot, 1, 1, 1)
        params = draw_params(self.chain, len(xs), self.generator)
        self.forwards += 1
        logits = self.model(apply_drawn(xs, self.chain, params, self.generator))
        return logits.view(self.eot, n, *logits.shape[1:]).mean(0)


def image_seeds(names: Sequence[str], seed: int) -> list[int]:
    """A platform seed per image from its name and the run's seed: its draw does not depend on batching."""
    return [(zlib.crc32(str(name).encode()) + 7919 * int(seed)) & 0x7FFFFFFF for name in names]


@torch.no_grad()
def platform_scores(model: nn.Module, x: torch.Tensor, chain: Chain | None, seeds: Sequence[int], batch_size: int = 32) -> torch.Tensor:
    """``P(real)`` of ``model`` on ``x`` after the real ``chain`` (``None``: lossless), one seeded draw per image (CPU)."""
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            if chain:
                xb = apply_chain(xb, chain, seeds[start : start + batch_size])
            out.append(model(xb.to(device)).float().softmax(1)[:, REAL].cpu())
    return torch.cat(out) if out else torch.empty(0)


def _rate(hits: torch.Tensor) -> dict[str, Any]:
    """A success rate with its n and Wilson 95% interval."""
    n, k = len(hits), int(hits.sum())
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else float("nan"), "k": k, "n": n, "ci": [lo, hi]}


def platform_experiment(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str],
    attack: str,
    params: dict[str, Any],
    robust_to: str,
    heldout: str | None = None,
    eot: int = 8,
    seed: int = 0,
    batch_size: int = 32,
    out_dir: Path | None = None,
    keep_rows: bool = False,
) -> dict[str, Any]:
    """Plain vs. transformation-robust ``attack`` at the same parameters, scored lossless and after two chains.

    Both attacks run on the same images ``x`` (labels ``y``); their 8-bit results are scored on
    ``model`` losslessly, after ``robust_to`` (the chain the robust attack averaged over) and after
    ``heldout`` (one it did not see; default :data:`~dfrobust.attacks.chain.DEFAULT_HELDOUT`), each
    image with the same seeded draw for both attacks (common random numbers). Success is
    misclassification (rate with n and a Wilson interval). With ``out_dir``, writes
    ``platform.csv`` (one row per image and attack) and ``summary.json``; returns the summary
    (with ``keep_rows``, the per-image rows under ``rows`` too).
    """
    from dfrobust.attacks.chain import DEFAULT_HELDOUT

    chain = parse_chain(robust_to)
    held = parse_chain(heldout or DEFAULT_HELDOUT, "--heldout")
    if len(names) != len(x) or len(y) != len(x):
        raise DfrobustError(f"{len(x)} images, {len(y)} labels and {len(names)} names: give one of each per image")
    seeds = image_seeds(names, seed)
    chains = {"lossless": None, "chain": chain, "heldout": held}
    clean = {k: platform_scores(model, x, c, seeds, batch_size) for k, c in chains.items()}
    summary: dict[str, Any] = {
        "attack": attack,
        "params": params,
        "robust_to": format_chain(chain),
        "heldout": format_chain(held),
        "eot": eot,
        "seed": seed,
        "n": len(x),
        "clean_accuracy": {k: _rate((s >= 0.5).long() == y) for k, s in clean.items()},
        "success": {},
    }
    rows: list[dict[str, Any]] = []
    for variant in ("plain", "robust"):
        target: nn.Module = model if variant == "plain" else RobustModel(model, chain, eot, seed)
        adv = []
        for start in range(0, len(x), batch_size):
            made = make_attack(attack, **params)
            adv.append(made(target, x[start : start + batch_size], y[start : start + batch_size]).x_adv)
        x_adv = quantize(torch.cat(adv))  # what would be uploaded: 8-bit pixels
        scores = {k: platform_scores(model, x_adv, c, seeds, batch_size) for k, c in chains.items()}
        fooled = {k: (s >= 0.5).long() != y for k, s in scores.items()}
        summary["success"][variant] = {k: _rate(v) for k, v in fooled.items()}
        for i, name in enumerate(names):
            rows.append({"image": name, "label": int(y[i]), "variant": variant,
                         **{f"{k}_p_real": float(scores[k][i]) for k in chains},
                         **{f"{k}_success": int(fooled[k][i]) for k in chains}})  # fmt: skip
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_csv(out_dir / "platform.csv", rows)
        write_json(out_dir / "summary.json", summary)
    return {**summary, "rows": rows} if keep_rows else summary


# --- hooks of the attack stage (dfrobust.studies.attack_run): a run with --robust-to -------------

#: AttackConfig fields of a platform run; left out of the crafting key when ``robust_to`` is unset.
PLATFORM_FIELDS = ("robust_to", "heldout", "robust_eot")
#: Result columns a platform run adds per image and target (the model's scores after the chains).
PLATFORM_COLUMNS = ("robust_to", "chain_p_real", "chain_pred", "heldout", "heldout_p_real", "heldout_pred")


def normalise_chains(robust_to: str | None, heldout: str | None, eot: int) -> tuple[str | None, str | None]:
    """Both chains validated (one-line errors) and normalised; ``heldout`` defaults when ``robust_to`` is set."""
    from dfrobust.attacks.chain import DEFAULT_HELDOUT

    if eot < 1:
        raise DfrobustError(f"--robust-eot must be >= 1, got {eot}")
    if robust_to is None:
        if heldout is not None:
            raise DfrobustError("--heldout is the chain the robust attack did not see; give --robust-to too")
        return None, None
    return format_chain(parse_chain(robust_to)), format_chain(parse_chain(heldout or DEFAULT_HELDOUT, "--heldout"))


def robust_source(model: nn.Module, robust_to: str | None, eot: int, seed: int) -> nn.Module:
    """The model an attack is crafted on: the EOT :class:`RobustModel` with a chain, else ``model`` itself."""
    return RobustModel(model, parse_chain(robust_to), eot, seed) if robust_to else model


def platform_batches(robust_to: str, heldout: str, x_adv: torch.Tensor, names: Sequence[str], seed: int) -> dict[str, torch.Tensor]:
    """The attacked images after the chain and after the held-out chain (per-image seeded draws)."""
    seeds = image_seeds(names, seed)
    return {
        "chain": apply_chain(x_adv, parse_chain(robust_to), seeds),
        "heldout": apply_chain(x_adv, parse_chain(heldout, "--heldout"), seeds),
    }


def platform_columns(robust_to: str, heldout: str, scores: dict[str, float]) -> dict[str, Any]:
    """A result row's platform columns from a target's scores on :func:`platform_batches`."""
    return {"robust_to": robust_to, "chain_p_real": scores["chain"], "chain_pred": int(scores["chain"] >= 0.5),
            "heldout": heldout, "heldout_p_real": scores["heldout"], "heldout_pred": int(scores["heldout"] >= 0.5)}  # fmt: skip


def add_platform_results(results: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
    """Per target, accuracy (with n) on the attacked images after the chain and after the held-out chain, beside lossless."""
    for target, res in results.items():
        mine = [r for r in rows if r["target"] == target and r.get("chain_pred") not in (None, "")]
        if not mine:
            continue
        n = len(mine)
        res["robust_to"], res["heldout"] = mine[0]["robust_to"], mine[0]["heldout"]
        for key in ("chain", "heldout"):
            correct = sum(int(r[f"{key}_pred"]) == int(r["label"]) for r in mine)
            res[f"{key}_accuracy"] = correct / n
            res[f"{key}_accuracy_ci"] = list(wilson_interval(correct, n))
        res["platform_n"] = n


def run_platform(
    data: Path,
    model_path: Path,
    out_dir: Path,
    attack: str = "fgsm",
    params: dict[str, Any] | None = None,
    robust_to: str = "jpeg:50-95",
    heldout: str | None = None,
    images: int | None = 64,
    eot: int = 8,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """:func:`platform_experiment` on a data folder's test fakes (a seeded subset of ``images``) and a detector file.

    What a study stage calls: it reads any data argument ``dfrobust attack`` reads and any
    checkpoint or card, writes ``OUT/summary.json`` (plus the data's fingerprint and the model's
    sha256) and ``OUT/platform.csv`` into a folder it owns, and returns the summary.
    """
    from dfrobust.data.layouts import load_images
    from dfrobust.models.loading import load_model_arg
    from dfrobust.utils.io import claim_own_folder, require_own_folder
    from dfrobust.utils.runtime import resolve_device

    out = require_own_folder(out_dir, "platform")
    parse_chain(robust_to)  # every argument checked before the model loads
    parse_chain(heldout or "jpeg:1", "--heldout")
    test, data_hash = load_images(data, "test", ["fake"], limit=images, seed=seed)
    model, meta = load_model_arg(model_path, resolve_device(device), expect_input_size=test.image_size)
    summary = platform_experiment(model, test.images(), test.y, test.paths, attack, dict(params or {}), robust_to, heldout,
                                  eot, seed, keep_rows=True)  # fmt: skip
    claim_own_folder(out, "platform")
    write_csv(out / "platform.csv", summary.pop("rows"))
    summary.update(data={"path": str(data), "fingerprint": data_hash}, model={"path": str(model_path), "sha256": meta.get("sha256")})
    write_json(out / "summary.json", summary)  # last: its presence marks a finished run
    return summary
