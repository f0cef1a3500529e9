"""The DIP study's finished batches on disk: curves as safetensors, kept outputs as PNGs.

The bookkeeping (units, the seeded assignment to ranks, completion marks, fingerprints) is the
generic :class:`dfrobust.utils.parts.PartStore`; this module adds the study's payload. Each
finished batch (unit) ``k`` leaves ``parts/part-0000k.safetensors`` (the recorded curves of its
images) and, written last, the mark ``parts/part-0000k.json`` (fingerprint, rank, and the image
keys, recorded iterations and timing). Kept outputs go to
``snapshots/<category>/<image>/iter-NNNNNN.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dfrobust.defenses.dip import DipTrajectory
from dfrobust.utils.io import atomic_path, save_png
from dfrobust.utils.parts import PartStore, Unit

CURVES = ("p_real_raw", "p_real_avg", "mse_input", "psnr_input", "psnr_clean")
#: One value per image, stored beside the curves when the study observes early stopping (ES-WMV).
EARLY_STOP_VALUES = ("es_iteration", "es_stopped_at", "es_p_real", "es_psnr_clean")
PAYLOAD = ".safetensors"


def snapshot_path(out_dir: Path, key: str, iteration: int) -> Path:
    """Where the output of study image ``key`` at ``iteration`` is kept."""
    return out_dir / "snapshots" / Path(key).with_suffix("") / f"iter-{iteration:06d}.png"


@dataclass
class ItemCurves:
    """One image's recorded curves (numpy-free: float lists), read back from a part."""

    iterations: list[int]
    curves: dict[str, torch.Tensor]  #: name -> R values (a single value for :data:`EARLY_STOP_VALUES`)
    seconds: float  #: this image's share of its batch's wall time
    device: str


def study_parts(out_dir: Path, fingerprint: str, n_items: int, batch_size: int, seed: int) -> PartStore:
    """The part store of a study: units of ``batch_size`` images of the study order, curves as payload."""
    return PartStore(Path(out_dir) / "parts", fingerprint, n_items, batch_size, seed=seed, payloads=(PAYLOAD,))


def write_part(store: PartStore, out_dir: Path, unit: Unit, keys: list[str], traj: DipTrajectory, device: str,
               rank: int = 0, world_size: int = 1) -> Path:  # fmt: skip
    """Store one finished batch: kept outputs as PNGs, the curves, then the mark."""
    for t, images in traj.snapshots.items():
        for key, img in zip(keys, images):
            save_png(snapshot_path(out_dir, key, t), img)
    names = CURVES + EARLY_STOP_VALUES
    tensors = {name: getattr(traj, name).float().contiguous() for name in names if getattr(traj, name) is not None}
    weights = store.path(unit, PAYLOAD)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
    return store.finish(unit, rank, world_size, keys=keys, iterations=traj.iterations, snapshots=sorted(traj.snapshots),
                        seconds=traj.seconds, device=device)  # fmt: skip


def load_curves(store: PartStore) -> dict[str, ItemCurves]:
    """Every finished image's curves, by key (the units done under the store's fingerprint)."""
    items: dict[str, ItemCurves] = {}
    for unit in store.units:
        mark = store.mark(unit)
        if mark is None:
            continue
        tensors = load_file(str(store.path(unit, PAYLOAD)))
        share = float(mark["seconds"]) / max(1, len(mark["keys"]))
        for i, key in enumerate(mark["keys"]):
            curves = {name: t[i] for name, t in tensors.items()}
            items[key] = ItemCurves(list(mark["iterations"]), curves, share, str(mark.get("device", "")))
    return items
