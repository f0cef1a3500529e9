"""The ``data`` stage kind: synthetic faces, an imported folder, or a pointer to the user's dataset.

``data`` writes ``RUN/data/`` (synthetic or imported) or ``RUN/data.json`` (a folder used in place);
every other stage reads it. Owns the ``[data]`` section.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from dfrobust.data.knobs import SwapKnobs
from dfrobust.errors import DfrobustError
from dfrobust.kinds.base import Plan, StageKind, register_stage_kind
from dfrobust.stages import Stage
from dfrobust.utils.io import write_json

#: Knobs of the built-in fakes a preset may set under ``[data.swap]`` (the fields of SwapKnobs).
SWAP_KNOBS = tuple(f.name for f in fields(SwapKnobs))


def data_stage(cfg: dict[str, Any], run_dir: Path, data_arg: Path | None) -> tuple[Stage, Path]:
    """The data stage and the folder the study reads its images from."""
    from dfrobust.data.folders import import_folder, is_dataset_folder
    from dfrobust.data.layouts import scan_layout
    from dfrobust.data.manifest import manifest_hash
    from dfrobust.data.synthetic import generate_synthetic

    d = cfg["data"]
    seed = int(cfg["run"]["seed"])
    if data_arg is None:
        out = run_dir / "data"
        swap = {k: float(v) for k, v in (d.get("swap") or {}).items()}
        unknown = sorted(set(swap) - set(SWAP_KNOBS))
        if unknown:
            raise DfrobustError(f"unknown data.swap knob(s) {unknown}; use {', '.join(SWAP_KNOBS)}")
        conf = {"source": "synthetic", "n": d["n"], "size": d["size"], "test_fraction": d["test_fraction"], "seed": seed, "swap": swap}

        def make() -> None:
            generate_synthetic(
                out, n=int(d["n"]), size=int(d["size"]), seed=seed, test_fraction=float(d["test_fraction"]), overwrite=True, **swap
            )

        return Stage("data", conf, out, make), out
    data_arg = data_arg.resolve()
    pointer = run_dir / "data.json"
    if data_arg.is_dir() and is_dataset_folder(data_arg):
        # Used in place: the stage only records which dataset it was (never deletes the user's folder).
        conf = {"source": "dataset", "path": str(data_arg), "manifest": manifest_hash(data_arg)}
        return Stage("data", conf, pointer, lambda: write_json(pointer, conf)), data_arg
    if cfg["run"].get("detectors"):
        # nothing is trained: the user's detectors are scored on their own folder or list as it is, never written to
        layout = scan_layout(data_arg)
        layout.select("test")  # no test images: a one-line error now, not after the first stages
        conf = {"source": "in-place", "path": str(data_arg), "layout": layout.description, "fingerprint": layout.fingerprint()}
        return Stage("data", conf, pointer, lambda: write_json(pointer, conf)), data_arg
    if not data_arg.is_dir():
        raise DfrobustError(
            f"--data {data_arg} is not a folder; training imports a dataset folder or a folder with real/ and fake/ "
            "(a .csv/.json list is read in place with --detector only)"
        )
    out = run_dir / "data"
    listing = sorted((str(p.relative_to(data_arg)), p.stat().st_size) for p in data_arg.rglob("*") if p.is_file())
    conf = {
        "source": "import",
        "path": str(data_arg),
        "files": len(listing),
        "bytes": sum(s for _, s in listing),
        "size": d["size"],
        "test_fraction": d["test_fraction"],
        "seed": seed,
    }

    def imp() -> None:
        import_folder(data_arg, out, size=int(d["size"]), test_fraction=float(d["test_fraction"]), seed=seed)

    return Stage("data", conf, out, imp), out


def data_summary(plan: Plan) -> dict[str, Any]:
    """What the report says of the data, kept in plan.json so it survives a moved data folder."""
    from dfrobust.data.layouts import scan_layout
    from dfrobust.data.manifest import manifest_hash, read_manifest

    data_dir = plan.data_dir
    if not (data_dir / "manifest.json").is_file():
        if data_dir == plan.run_dir / "data":
            return {}  # synthetic or imported data not made yet
        layout = scan_layout(data_dir)  # the user's folder or list, read in place
        found = layout.summary()
        return {
            "in_place": True,
            "layout": found["layout"],
            "counts": found["counts"],
            "groups": found["groups"],
            "n_images": found["n_images"],
            "manifest_hash": found["fingerprint"],
        }
    man = read_manifest(data_dir)
    return {
        "image_size": man.get("image_size"),
        "counts": man.get("counts"),
        "created_by": man.get("created_by"),
        "manifest_hash": manifest_hash(data_dir),
    }


@register_stage_kind
class DataKind(StageKind):
    """The study's images: made, imported, or read in place (sets ``plan.data_dir``)."""

    name = "data"
    section = "data"
    order = 0

    def plan(self, plan: Plan, cfg: dict[str, Any], device: str) -> list[Stage]:
        stage, plan.data_dir = data_stage(cfg, plan.run_dir, plan.data_arg)
        return [stage]
