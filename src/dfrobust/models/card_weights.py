"""A detector card's weights file loaded into the built model (shapes and keys checked, nothing unpickled), and the cards' one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models import deployed
from dfrobust.models.weights import load_state_dict_file


def _fail(card: Path, message: str) -> DfrobustError:
    return DfrobustError(f"detector card {card}: {message}")


def _names(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _unwrap_state(state: dict[str, Any]) -> dict[str, Any]:
    """The tensors of a state dict, unwrapped from a training checkpoint (``{"state_dict": ...}``) and
    from DataParallel's ``module.`` prefix."""
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        for key in ("state_dict", "model", "model_state_dict", "net"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_card_weights(model: nn.Module, card: Any) -> dict[str, list[str]]:
    """Load ``card.weights`` into ``model``; returns the ``missing`` and ``unexpected`` keys (non-strict cards).

    ``card`` is a :class:`~dfrobust.models.cards.DetectorCard` (untyped here: cards import this module).

    Shapes must always match; with ``strict`` every key must too. Mismatches are one-line errors
    that list the keys and name the shapes. Nothing is unpickled.
    """
    assert card.weights is not None
    if not card.weights.is_file():
        raise _fail(card.path, f"weights file {card.weights} does not exist (paths are relative to the card's folder)")
    state = _unwrap_state(load_state_dict_file(card.weights))
    if card.kind == "deployed":
        state = deployed.adapt_state(state, model)  # DeepfakeBench's key names
    own = model.state_dict()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = [k for k in own if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (file {list(tensors[k].shape)}, model {list(own[k].shape)})" for k in own if k in tensors and tensors[k].shape != own[k].shape
    ]
    where = f"weights {card.weights.name} do not fit {card.source}"
    if shapes:
        raise _fail(card.path, f"{where}: shapes differ for {_names(shapes, 3)}")
    if card.strict and (missing or unexpected):
        parts = [f"{len(missing)} missing key(s) ({_names(missing)})"] if missing else []
        parts += [f"{len(unexpected)} unexpected key(s) ({_names(unexpected)})"] if unexpected else []
        raise _fail(card.path, f"{where}: {', '.join(parts)}; fix the source or set strict = false")
    if not any(k in tensors for k in own):
        raise _fail(
            card.path, f"{where}: no key of the file matches the model (e.g. file {_names(list(state), 2)}, model {_names(list(own), 2)})"
        )
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)
    return {"missing": missing, "unexpected": unexpected}
