"""What the study records of a user's detector: its card's identity and its Table I metrics on the test split.

A detector brought with a card is not trained by the study; this record stands where a trained
model's sidecar would (``RUN/models/NAME.json``), so the report reads both the same way. The
data is any layout of :func:`~dfrobust.data.layouts.scan_layout`, read in place; when its images
have groups (one folder per generator), ``metrics.test_groups`` holds one Table I row per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from dfrobust.data.layouts import Item, scan_layout
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.evaluation import evaluate_items
from dfrobust.models.loading import load_model_arg
from dfrobust.utils.io import write_json
from dfrobust.utils.runtime import resolve_device

#: Below this many images, reading them in this process is faster than starting DataLoader workers.
WORKER_THRESHOLD = 512


def first_image_size(items: Sequence[Item]) -> tuple[int, int]:
    """``(H, W)`` of the first image whose header can be read (the size images are batched at when nothing else says)."""
    for item in items:
        try:
            with Image.open(item.path) as im:
                return im.size[1], im.size[0]
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    raise DfrobustError(f"none of the {len(items)} test images can be read (e.g. {items[0].path}); check the data folder")


def write_card_record(
    data_dir: str | Path, card: str | Path, out: str | Path, batch_size: int = 64, device: str = "auto"
) -> dict[str, Any]:
    """Load ``card``, evaluate it on the test split of ``data_dir`` (any layout) and write its record to ``out`` (JSON)."""
    dev = resolve_device(device)
    layout = scan_layout(data_dir)
    model, meta = load_model_arg(card, dev, expect_input_size=layout.image_size)
    items = layout.select("test")
    size = layout.image_size or meta.get("input_size") or first_image_size(items)
    workers = 2 if len(items) > WORKER_THRESHOLD else 0
    result = evaluate_items(model, items, (int(size[0]), int(size[1])), batch_size, dev, workers=workers)
    metrics: dict[str, Any] = {"test": result["metrics"]}
    if result["groups"]:
        metrics["test_groups"] = result["groups"]
    record = {
        **{k: v for k, v in meta.items() if isinstance(v, (str, int, float, list, type(None)))},
        "kind": "card",
        "card": str(Path(card).resolve()),
        "data": {"layout": layout.description, "fingerprint": layout.fingerprint()},
        "metrics": metrics,
        "skipped": result["skipped"],
    }
    write_json(out, record)
    return record
