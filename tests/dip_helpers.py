"""Helpers of the DIP tests: one intra-op thread, and hand-made attack output folders."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dfrobust.constants import FAKE
from dfrobust.data.dataset import load_split
from dfrobust.data.manifest import manifest_hash
from dfrobust.utils.io import save_png, sha256_file, write_csv, write_json

RESULT_COLUMNS = ["image", "label", "attack", "source", "target", "setting", "clean_p_real", "adv_p_real", "clean_pred", "adv_pred"]


def make_attack_folder(
    out: Path,
    data_dir: Path,
    model_path: Path,
    attack: str,
    setting: str,
    target: str | None = None,
    sha256: str | None = None,
    manifest: str | None = None,
) -> Path:
    """An attack output folder as docs/architecture.md describes it, made by hand.

    Every other test fake is smoothed (which wipes the toy fakes' checkerboard: the classifier
    then calls it real, a "fake-wrong"); the rest get faint noise (still "fake-correct").
    ``target``/``sha256``/``manifest`` default to the model's stem, its real hash and the
    dataset's manifest hash.
    """
    test = load_split(data_dir, "test", classes=["fake"])
    name = target or model_path.stem
    gen = torch.Generator().manual_seed(len(attack))
    rows = []
    for i, rel in enumerate(test.paths):
        x = test.images([i])[0]
        if i % 2 == 0:
            adv = F.avg_pool2d(x[None], 3, 1, 1, count_include_pad=False)[0]
        else:
            adv = (x + 0.01 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        save_png(out / "images" / rel, adv)
        rows.append({"image": rel, "label": FAKE, "attack": attack, "source": name, "target": name, "setting": setting})
        # a row for another target that the study must ignore
        rows.append({"image": rel, "label": FAKE, "attack": attack, "source": name, "target": "other-model", "setting": "blackbox"})
    write_csv(out / "results.csv", rows, RESULT_COLUMNS)
    targets = {
        name: {"path": str(model_path), "sha256": sha256 or sha256_file(model_path)},
        "other-model": {"path": "x", "sha256": "0" * 64},
    }
    dataset = {"path": str(data_dir), "manifest_hash": manifest or manifest_hash(data_dir)}
    write_json(out / "summary.json", {"source": {name: targets[name]}, "targets": targets, "attack": {"label": attack}, "dataset": dataset})
    return out
