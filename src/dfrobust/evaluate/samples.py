"""Sample images with their scores (the paper's Fig 2): real, fake and perturbed test images.

:func:`write_samples` picks fake test images attacked by every given attack, a few real test
images, scores them with the given detectors and writes ``OUT/samples.json`` plus the images as
PNG under ``OUT/``, so the report can draw Fig 2 without the dataset or the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dfrobust.data.layouts import load_images, read_resized, scan_layout
from dfrobust.models.loading import load_model_arg
from dfrobust.models.inference import p_real
from dfrobust.utils.io import load_image, read_csv, save_png, write_json
from dfrobust.utils.runtime import resolve_device


def _clean_image(files: dict[str, Path], data_dir: Path, image_id: str, size: tuple[int, int]) -> torch.Tensor:
    """The clean image ``image_id`` of the data as float ``3 x H x W`` at ``size``."""
    path = files.get(image_id, data_dir / image_id)
    return torch.from_numpy(read_resized(path, size).copy()).permute(2, 0, 1).float() / 255.0


def write_samples(
    data_dir: str | Path,
    models: dict[str, Path],
    attack_dirs: dict[str, Path],
    out_dir: str | Path,
    n: int = 5,
    device: str = "auto",
) -> Path:
    """Write ``n`` real, fake and perturbed samples with each model's P(real); returns ``OUT/samples.json``.

    Args:
        data_dir: the data (any layout of :func:`~dfrobust.data.layouts.scan_layout`; real images come from its test split).
        models: name -> checkpoint of the detectors whose scores are shown.
        attack_dirs: attack name -> attack output folder (its ``results.csv`` and ``images/``).
        out_dir: where the samples go (``samples.json`` is written last).
        n: images per row.
        device: where the real images are scored.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    # a survivors-only run's skipped images have no adversarial PNG: only attacked rows can be shown
    rows_of = {a: [r for r in read_csv(Path(d) / "results.csv") if not r.get("skipped")] for a, d in attack_dirs.items()}
    by_image: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for a, rows in rows_of.items():
        for r in rows:
            by_image.setdefault(r["image"], {})[(a, r["target"])] = r
    # fakes scored by every model under every attack, in the attack runs' order
    chosen = [img for img, rs in by_image.items() if all((a, m) in rs for a in attack_dirs for m in models)][:n]
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"models": list(models), "rows": []}
    if chosen:
        real, _ = load_images(data_dir, "test", classes=["real"], limit=len(chosen), seed=0)
        files = {i.rel: i.path for i in scan_layout(data_dir).items}  # image ids -> files, in any layout
        dev = resolve_device(device)
        scores = {m: p_real(load_model_arg(p, dev)[0], real.images(), device=dev) for m, p in models.items()}
        cells = []
        for i in range(len(real)):
            save_png(out_dir / "real" / f"{i}.png", real.images([i])[0])
            cells.append({"image": f"real/{i}.png", "p_real": {m: float(scores[m][i]) for m in models}})
        record["rows"].append({"kind": "real", "cells": cells})
        first = next(iter(attack_dirs))
        cells = []
        for i, img in enumerate(chosen):
            # the clean fake at the size it was attacked at (images of a user's folder may differ in size)
            size = load_image(Path(attack_dirs[first]) / "images" / str(Path(img).with_suffix(".png"))).shape[-2:]
            save_png(out_dir / "fake" / f"{i}.png", _clean_image(files, data_dir, img, tuple(size)))
            cells.append({"image": f"fake/{i}.png", "p_real": {m: float(by_image[img][(first, m)]["clean_p_real"]) for m in models}})
        record["rows"].append({"kind": "fake", "cells": cells})
        for a, folder in attack_dirs.items():
            cells = []
            for i, img in enumerate(chosen):
                adv: torch.Tensor = load_image(Path(folder) / "images" / str(Path(img).with_suffix(".png")))
                save_png(out_dir / a / f"{i}.png", adv)
                cells.append({"image": f"{a}/{i}.png", "p_real": {m: float(by_image[img][(a, m)]["adv_p_real"]) for m in models}})
            source = rows_of[a][0]["source"] if rows_of[a] else ""
            record["rows"].append(
                {"kind": "perturbed", "attack": rows_of[a][0]["attack"] if rows_of[a] else a, "source": source, "cells": cells}
            )
    write_json(out_dir / "samples.json", record)  # last: it marks a finished folder
    return out_dir / "samples.json"
