"""Per-batch results of the DIP study on disk, so a killed or sharded run keeps finished batches.

Each finished batch ``k`` of size ``B`` leaves ``parts/batch-bB-KKKK.safetensors`` (the recorded
curves) and, written last as the completion mark, ``parts/batch-bB-KKKK.json`` (the image keys, recorded
iterations, the study fingerprint, timing). Kept outputs go to
``snapshots/<category>/<image>/iter-NNNNNN.png``. Parts with another fingerprint (another
configuration, model or sample) are ignored and overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dfrobust.defenses.dip import DipTrajectory
from dfrobust.utils.io import atomic_path, read_json, save_png, write_json

CURVES = ("p_real_raw", "p_real_avg", "mse_input", "psnr_input", "psnr_clean")


def snapshot_path(out_dir: Path, key: str, iteration: int) -> Path:
    """Where the output of study image ``key`` at ``iteration`` is kept."""
    return out_dir / "snapshots" / Path(key).with_suffix("") / f"iter-{iteration:06d}.png"


@dataclass
class ItemCurves:
    """One image's recorded curves (numpy-free: float lists), read back from a part."""

    iterations: list[int]
    curves: dict[str, torch.Tensor]  #: name -> R values
    seconds: float  #: this image's share of its batch's wall time
    device: str


class PartStore:
    """Finished batches of one study (one fingerprint) under ``out_dir/parts``."""

    def __init__(self, out_dir: Path, fingerprint: str) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / "parts"
        self.fingerprint = fingerprint

    def _sidecars(self) -> list[tuple[Path, dict]]:
        found = []
        for path in sorted(self.dir.glob("batch-*.json")):
            try:
                meta = read_json(path)
            except ValueError:
                continue  # a damaged mark: that batch simply runs again
            if meta.get("fingerprint") == self.fingerprint and path.with_suffix(".safetensors").is_file():
                found.append((path, meta))
        return found

    def done_keys(self) -> set[str]:
        """Keys of every image already purified under this fingerprint."""
        return {k for _, meta in self._sidecars() for k in meta["keys"]}

    def write(self, batch: str, keys: list[str], traj: DipTrajectory, device: str) -> Path:
        """Store one finished batch (named e.g. ``b8-0003``: batch size and index): curves, kept outputs as PNGs, then the JSON mark."""
        for t, images in traj.snapshots.items():
            for key, img in zip(keys, images):
                save_png(snapshot_path(self.out_dir, key, t), img)
        tensors = {name: getattr(traj, name).float().contiguous() for name in CURVES if getattr(traj, name) is not None}
        weights = self.dir / f"batch-{batch}.safetensors"
        weights.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp))
        meta = {
            "fingerprint": self.fingerprint,
            "batch": batch,
            "keys": keys,
            "iterations": traj.iterations,
            "snapshots": sorted(traj.snapshots),
            "seconds": traj.seconds,
            "device": device,
        }
        return write_json(weights.with_suffix(".json"), meta)

    def load(self) -> dict[str, ItemCurves]:
        """Every finished image's curves, by key (a later part wins when a key appears twice)."""
        items: dict[str, ItemCurves] = {}
        for path, meta in self._sidecars():
            tensors = load_file(str(path.with_suffix(".safetensors")))
            share = float(meta["seconds"]) / max(1, len(meta["keys"]))
            for i, key in enumerate(meta["keys"]):
                curves = {name: t[i] for name, t in tensors.items()}
                items[key] = ItemCurves(list(meta["iterations"]), curves, share, str(meta.get("device", "")))
        return items
