"""What the study records of a user's detector: its card's identity and its Table I metrics on the test split.

A detector brought with a card is not trained by the study; this record stands where a trained
model's sidecar would (``RUN/models/NAME.json``), so the report reads both the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.data.dataset import load_split
from dfrobust.evaluate.evaluation import evaluate_detector
from dfrobust.models.loading import load_model_arg
from dfrobust.utils.io import write_json
from dfrobust.utils.runtime import resolve_device


def write_card_record(data_dir: str | Path, card: str | Path, out: str | Path, batch_size: int = 64,
                      device: str = "auto") -> dict[str, Any]:
    """Load ``card``, evaluate it on the test split of ``data_dir`` and write its record to ``out`` (JSON)."""
    dev = resolve_device(device)
    model, meta = load_model_arg(card, dev)
    test = load_split(data_dir, "test")
    record = {**{k: v for k, v in meta.items() if isinstance(v, (str, int, float, list, type(None)))},
              "kind": "card", "card": str(Path(card).resolve()),
              "metrics": {"test": evaluate_detector(model, test, batch_size, dev)}}
    write_json(out, record)
    return record
