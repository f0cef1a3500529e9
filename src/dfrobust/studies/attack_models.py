"""The models of an attack run: the source (one model, or the logit ensemble of several) and the targets, each loaded once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfrobust.errors import DfrobustError
from dfrobust.models.ensemble import LogitEnsemble, check_input_sizes, check_output_shapes, ensemble_name
from dfrobust.models.loading import load_model_arg, model_display_name, model_input_size
from dfrobust.utils.io import sha256_bytes, to_json

#: The ``setting`` of a target that is one of the ensemble the images were crafted on.
ENSEMBLE_MEMBER = "ensemble-member"


@dataclass
class RunModel:
    name: str
    path: Path | None  # None: an ensemble (its members have paths)
    sha256: str
    model: nn.Module
    members: list[RunModel] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What summary.json says of the model: path and sha256, or an ensemble's sha256 and members."""
        if self.members:
            return {"sha256": self.sha256, "members": {m.name: m.record() for m in self.members}}
        return {"path": str(self.path), "sha256": self.sha256}

    def setting(self, src: RunModel) -> str:
        """``whitebox`` on the source itself, ``ensemble-member`` on a member of an ensemble source, else ``blackbox``."""
        if self is src:
            return "whitebox"
        return ENSEMBLE_MEMBER if any(m is self for m in src.members) else "blackbox"


def load_models(
    sources: list[Path], targets: list[Path], device: torch.device, size: tuple[int, int], source_name: str | None = None
) -> tuple[RunModel, list[RunModel]]:
    """Load the source (one model, or the ensemble of several) and the targets; the source is always
    evaluated too, first when not listed. Each file is loaded once."""
    if not sources:
        raise DfrobustError("give at least one --source model")
    if len(sources) == 1 and source_name is not None:
        raise DfrobustError("--source-name names an ensemble; give two or more --source (one model keeps its own name)")
    if len(sources) > 1:  # before loading anything: a mismatch is not the data's fault
        check_input_sizes({model_display_name(p): model_input_size(p) for p in sources})
    seen: dict[str, RunModel] = {}

    def load(path: Path) -> RunModel:
        name = model_display_name(path)
        if name in seen:
            if Path(seen[name].path or "").resolve() == path.resolve():
                return seen[name]
            raise DfrobustError(
                f"two models are named {name!r} ({seen[name].path} and {path}); model names are file stems or card names, rename one"
            )
        model, meta = load_model_arg(path, device=device, expect_input_size=size)  # a card resizes inside: any size
        seen[name] = RunModel(name, path, meta["sha256"], model)
        return seen[name]

    if len(sources) == 1:
        paths = list(targets)
        if not any(p.resolve() == sources[0].resolve() for p in paths):
            paths.insert(0, sources[0])
        loaded = list({id(m): m for m in map(load, paths)}.values())
        return load(sources[0]), loaded
    return _load_ensemble(sources, targets, device, size, source_name, load)


def _load_ensemble(sources: list[Path], targets: list[Path], device: torch.device, size: tuple[int, int], source_name: str | None,
                   load: Callable[[Path], RunModel]) -> tuple[RunModel, list[RunModel]]:  # fmt: skip
    """The :class:`LogitEnsemble` of ``sources`` as the source model, then the targets (members loaded once)."""
    members: list[RunModel] = [load(p) for p in sources]
    names = [m.name for m in members]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DfrobustError(f"--source {twice[0]} is given twice; list each ensemble member once")
    check_output_shapes({m.name: m.model for m in members}, torch.zeros(1, 3, *size, device=device))
    name = source_name or ensemble_name(names)
    loaded = list({id(m): m for m in map(load, targets)}.values())
    if any(m.name == name for m in loaded):
        raise DfrobustError(f"the ensemble's name {name!r} is also a target's; choose another --source-name")
    identity = {"ensemble": name, "members": [[m.name, m.sha256] for m in members]}  # member order and the name
    src = RunModel(
        name, None, sha256_bytes(to_json(identity).encode()), LogitEnsemble([m.model for m in members]).to(device).eval(), members=members
    )
    return src, [src, *loaded]
