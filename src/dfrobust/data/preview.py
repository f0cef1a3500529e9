"""Contact sheets: a grid of real and fake samples of a dataset folder, for people to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from dfrobust.constants import CLASS_NAMES, FAKE, REAL
from dfrobust.data.manifest import read_manifest
from dfrobust.utils.io import WRITTEN_BY, atomic_path

#: The mark a contact sheet carries (``data preview --out``, ``data synth|faceswap|import --preview`` replace only such files).
SHEET_KIND = "contact sheet"


def contact_sheet(data_dir: str | Path, out_png: str | Path, per_class: int = 16, cols: int = 8, tile: int = 128, seed: int = 0) -> Path:
    """Save a PNG grid: ``per_class`` real images on top, as many fakes below, each labelled.

    Images are enlarged with nearest-neighbour sampling so that pixel-level artefacts stay
    visible as they are. The samples are a seeded random choice.

    >>> contact_sheet("data/synth", "synth.png")  # doctest: +SKIP
    """
    data_dir = Path(data_dir)
    records = read_manifest(data_dir)["images"]
    rng = np.random.default_rng(seed)
    label_h, gap = 14, 4
    blocks = []
    for label in (REAL, FAKE):
        recs = [r for r in records if r["label"] == label]
        chosen = sorted(rng.choice(len(recs), size=min(per_class, len(recs)), replace=False)) if recs else []
        blocks.append((CLASS_NAMES[label], [recs[i] for i in chosen]))
    rows = sum(-(-len(recs) // cols) for _, recs in blocks)
    sheet = Image.new("RGB", (cols * (tile + gap) + gap, rows * (tile + label_h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    row = 0
    for name, recs in blocks:
        for k, rec in enumerate(recs):
            r, c = row + k // cols, k % cols
            x, y = gap + c * (tile + gap), gap + r * (tile + label_h + gap)
            with Image.open(data_dir / rec["path"]) as im:
                sheet.paste(im.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y + label_h))
            caption = f"{name} {rec['path'].split('/')[-1]}"
            if "source_identity" in rec:
                caption = f"{name} {rec['source_identity']}->{rec['identity']}"
            draw.text((x + 2, y + 1), caption, fill=(200, 0, 0) if name == "fake" else (0, 110, 0))
        row += -(-len(recs) // cols)
    info = PngInfo()
    info.add_text(WRITTEN_BY, SHEET_KIND)  # so that --preview/--out may later replace this file, and no other
    with atomic_path(out_png) as tmp:
        sheet.save(tmp, format="PNG", pnginfo=info)
    return Path(out_png)
