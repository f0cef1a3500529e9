"""Partial-training state as one safetensors file: weights, optimizer, RNG, bookkeeping. No pickle.

An interrupted ``train_detector`` resumes from the last finished epoch. Everything needed is
flattened into tensors (``model.*``, ``best.*``, ``optim.<param>.<key>``, ``rng.*``) plus a JSON
string in the safetensors metadata, and written atomically, so the file is either the old
epoch's or the new one's, never half of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dfrobust.utils.io import atomic_path, to_json

_META_KEY = "dfrobust_state"


def partial_path(out_path: str | Path) -> Path:
    """Where the partial state of a model being trained to ``out_path`` lives (``x.partial.safetensors``)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".partial.safetensors")


def _cpu(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer's state dict into tensors (``optim.<param>.<key>``) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in info["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_partial(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    best: dict[str, torch.Tensor] | None,
    info: dict[str, Any],
) -> None:
    """Write the training state atomically (model, best weights so far, optimizer, RNG, ``info``)."""
    tensors = _cpu(model.state_dict(), "model")
    if best is not None:
        tensors.update(_cpu(best, "best"))
    opt_tensors, opt_info = optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: to_json({**info, "optimizer": opt_info})})


def load_partial(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None:
    """Read a partial state: (``{"model": ..., "best": ..., "optim": ..., "rng": ...}``, info), or ``None`` if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            info = json.loads(fh.metadata()[_META_KEY])
            groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "optim": {}, "rng": {}}
            for name in fh.keys():
                group, _, key = name.partition(".")
                groups[group][key if group != "optim" else name] = fh.get_tensor(name)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError):
        return None
    return groups, info


def restore_rng(rng: dict[str, torch.Tensor]) -> None:
    """Restore the global torch RNG (and CUDA's, when saved and present)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
