"""Evaluating a detector on an image set: the paper's Table I row plus robustness indicators.

:func:`evaluate_detector` takes images held in memory; :func:`evaluate_items` streams them from
disk (any layout of :mod:`dfrobust.data.layouts`) with constant memory and adds one row per group
(generator) when the images have groups. Under torchrun it shares the batches among the ranks
(the seeded assignment of :mod:`dfrobust.utils.parts`, no padding) and gathers the logits in
the global order, so every rank gets the metrics of a one-process run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dfrobust.constants import DECISION_THRESHOLD, REAL
from dfrobust.data.dataset import ImageSet
from dfrobust.data.layouts import Item, LazyImageDataset, collate_skipping, load_images, make_loader
from dfrobust.data.tensors import image_tensors
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.metrics import detection_metrics
from dfrobust.models.gradients import input_gradient_norms
from dfrobust.models.inference import eval_mode, predict_logits
from dfrobust.utils import distributed
from dfrobust.utils.labels import DFROBUST_LABELS, label_convention_flips
from dfrobust.utils.parts import assign, plan_units

#: Rows of :func:`format_metrics_table`, in order, with their labels.
TABLE_ROWS = (
    ("n", "images"),
    ("accuracy", "accuracy"),
    ("auroc", "AUROC"),
    ("fake_precision", "fake precision"),
    ("fake_recall", "fake recall"),
    ("real_precision", "real precision"),
    ("real_recall", "real recall"),
    ("ap_fake_positive", "AP (fake positive)"),
    ("eer_fake_positive", "EER (fake positive)"),
    ("loss", "cross-entropy"),
    ("input_grad_norm", "mean ||d logits / dx||"),
)


def evaluate_detector(
    model: nn.Module,
    imageset: ImageSet | torch.Tensor | tuple | str | Path,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    threshold: float = DECISION_THRESHOLD,
    gradients: bool = True,
    *,
    y: Any = None,
    labels: str = DFROBUST_LABELS,
    split: str | None = "test",
) -> dict[str, Any]:
    """Table I metrics of ``model`` on ``imageset``, the confusion matrix and gradient size.

    The model is evaluated in eval mode (its mode is restored afterwards). The images and labels
    are checked before any is scored; a wrong input is a one-line :class:`DfrobustError`.

    >>> evaluate_detector(model, (x, y), labels="fake=1")        # doctest: +SKIP
    >>> evaluate_detector(model, "CNNDetection", split="test")    # doctest: +SKIP

    Args:
        model: a detector (pixels in ``[0, 1]`` -> 2 logits).
        imageset: the images and labels: an :class:`ImageSet` (e.g. ``load_split(dir, "test")``),
            a pair ``(x, y)`` or a float tensor ``x`` ``N x 3 x H x W`` in ``[0, 1]`` with ``y=``
            (scored as given, not rounded to 8 bits), or a folder / image list of any layout that
            :func:`dfrobust.load_images` reads (its ``split``).
        y: the labels when ``imageset`` is a tensor.
        labels: the convention of tensor labels: ``"fake=0"`` (dfrobust's, the default) or
            ``"fake=1"`` (DeepfakeBench's, CNNDetection's). Folders carry their own classes.
        split: the split of a folder (``None``: every image).
        batch_size: images per forward pass.
        device: where to compute (default: the model's device).
        threshold: decision threshold on ``P(real)``.
        gradients: also compute ``input_grad_norm``, the mean over images of the Frobenius
            norm of the logits' input Jacobian (what eq. (7) penalises); ``None`` when off.

    Returns:
        :func:`~dfrobust.evaluate.metrics.detection_metrics` (``accuracy``, ``auroc``,
        ``fake_precision``, ``fake_recall``, ``real_precision``, ``real_recall``,
        ``confusion``, ``n``, ``threshold``) plus ``loss`` (mean cross-entropy) and
        ``input_grad_norm``.
    """
    x, y = _images_and_labels(imageset, y, labels, split)
    if not isinstance(model, nn.Module):
        raise DfrobustError(f"model must be a torch nn.Module (pixels in [0, 1] -> 2 logits), got a {type(model).__name__}")
    with eval_mode(model):  # every submodule gets its own mode back (a wrapper may be in train mode)
        logits = predict_logits(model, x, batch_size, device)
        if logits.ndim != 2 or logits.shape[1] != 2:
            raise DfrobustError(
                f"the model returns shape {tuple(logits.shape)}, not N x 2 logits (fake, real); "
                "wrap it with dfrobust.wrap_detector (output kind, fake index)"
            )
        norms = input_gradient_norms(model, x, batch_size, device) if gradients else None
    return metrics_from_logits(logits, y.to(logits.device), threshold, norms)


def _images_and_labels(data: Any, y: Any, labels: str, split: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images and dfrobust labels of any input :func:`evaluate_detector` takes (checked, one-line errors)."""
    flips = label_convention_flips(labels)  # an unknown convention is an error whatever the input
    if isinstance(data, ImageSet):
        if y is not None or flips:
            raise DfrobustError("an ImageSet carries its own labels (dfrobust's, fake = 0); pass y= and labels= with tensors only")
        return data.images(), data.y
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        if y is not None:
            raise DfrobustError("labels given twice: pass (x, y) or x with y=, not both")
        data, y = data
    if isinstance(data, torch.Tensor):
        return image_tensors(data, y, labels)
    if isinstance(data, (str, Path)):
        if y is not None or flips:
            raise DfrobustError("a folder carries its own classes (real/, fake/ or a list's labels); y= and labels= are for tensors")
        images = load_images(data, split)[0]
        return images.images(), images.y
    raise DfrobustError(
        f"evaluate_detector takes an ImageSet, (x, y) tensors, a tensor x with y=, or a folder / image list; got a {type(data).__name__}"
    )


def metrics_from_logits(
    logits: torch.Tensor, y: torch.Tensor, threshold: float = 0.5, grad_norms: torch.Tensor | None = None
) -> dict[str, Any]:
    """:func:`~dfrobust.evaluate.metrics.detection_metrics` of 2-logit outputs plus ``loss`` and ``input_grad_norm``."""
    out = detection_metrics(y, logits.softmax(1)[:, REAL], threshold)
    out["loss"] = float(F.cross_entropy(logits, y)) if len(y) else float("nan")
    out["input_grad_norm"] = float(grad_norms.mean()) if grad_norms is not None and len(grad_norms) else None
    return out


def evaluate_items(
    model: nn.Module,
    items: Sequence[Item],
    size: tuple[int, int],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    threshold: float = 0.5,
    gradients: bool = True,
    workers: int = 2,
    ctx: distributed.Context | None = None,
) -> dict[str, Any]:
    """Table I metrics of ``model`` on images read lazily from disk and resized to ``size``.

    Memory stays constant in the number of images: a DataLoader (``workers`` processes, pinned
    memory on CUDA) decodes one batch at a time, and each batch's logits and gradient norms are
    written into arrays of ``len(items)`` rows allocated once, so nothing is kept per batch.
    With ``ctx`` of several ranks under a process group (torchrun), each rank reads and scores
    its share of the batches and every rank returns the metrics of all images.

    Returns:
        ``{"metrics": <evaluate_detector's dict>, "groups": {group: metrics} (images with a group
        only; empty when none), "skipped": [{"path", "reason"}] (unreadable files, not counted)}``.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    dataset = LazyImageDataset(items, size)
    if ctx is not None and ctx.group and ctx.sharded:
        # the batches of a one-process run (same composition, same numbers), shared among the ranks
        units = plan_units(len(items), batch_size)
        owners = assign(len(units), ctx.world_size)
        mine = [list(range(u.start, u.stop)) for u in units if owners[u.index] == ctx.rank]
        loader = DataLoader(dataset, batch_sampler=mine, num_workers=workers, pin_memory=device.type == "cuda",
                            collate_fn=collate_skipping)  # fmt: skip
    else:
        loader = make_loader(dataset, batch_size, workers, device)
    # one row per image, filled in place: small tensors kept per batch would pin the batches' freed
    # memory in the allocator's heap (and keep the workers' shared-memory segments open)
    scores: torch.Tensor | None = None  # N x C, allocated once the first batch gives C
    grad_norms = torch.zeros(len(items)) if gradients else None
    scored = torch.zeros(len(items), dtype=torch.bool)
    skipped: list[dict[str, str]] = []
    with eval_mode(model):
        for batch in loader:
            skipped += [{"path": items[i].rel, "reason": reason} for i, reason in batch["skipped"]]
            if batch["x"] is None:
                continue
            rows = batch["index"]
            x = batch["x"].to(device, non_blocking=True).float().div_(255.0)
            del batch  # the images are on ``device`` now; free the loader's copy before the forward pass
            with torch.no_grad():
                z = model(x).float().cpu()
            if scores is None:
                scores = torch.zeros(len(items), z.shape[1])
            scores[rows] = z
            if grad_norms is not None:
                grad_norms[rows] = input_gradient_norms(model, x, batch_size, device)
            scored[rows] = True
            del x, z, rows  # free this batch's tensors before the loader hands over the next one
    kept = scored.nonzero().squeeze(1)  # the images read (by this rank), in item order
    logits: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    index: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    if scores is not None and len(kept):
        logits, index = [scores[kept]], [kept]
        labels = [torch.tensor([item.label for item in items], dtype=torch.long)[kept]]
        norms = [grad_norms[kept]] if grad_norms is not None else []
    if ctx is not None and ctx.group and ctx.sharded:
        logits, labels, index, norms, skipped = _gather_in_order(ctx, items, logits, labels, index, norms, skipped)
    if not logits:
        raise DfrobustError(f"none of the {len(items)} images could be read (e.g. {skipped[0]['path']}: {skipped[0]['reason']})")
    z, y, idx = torch.cat(logits), torch.cat(labels), torch.cat(index)  # one tensor each (per rank: gathered)
    g = torch.cat(norms) if gradients else None
    groups: dict[str, Any] = {}
    names = [items[i].group for i in idx.tolist()]
    for name in sorted({n for n in names if n}):
        mask = torch.tensor([n == name for n in names])
        groups[name] = metrics_from_logits(z[mask], y[mask], threshold, g[mask] if g is not None else None)
    return {"metrics": metrics_from_logits(z, y, threshold, g), "groups": groups, "skipped": skipped}


def _gather_in_order(
    ctx: distributed.Context, items: Sequence[Item], logits: list, labels: list, index: list, norms: list, skipped: list
) -> tuple[list, list, list, list, list]:
    """Every rank's scored batches, put back in the global image order (as one process would have them)."""
    parts = distributed.all_gather((logits, labels, index, norms, skipped), ctx)
    position = {item.rel: i for i, item in enumerate(items)}
    all_skipped = sorted((s for p in parts for s in p[4]), key=lambda s: position.get(s["path"], -1))
    if not any(p[0] for p in parts):
        return [], [], [], [], all_skipped

    def joined(k: int) -> torch.Tensor:
        return torch.cat([t for p in parts for t in p[k]])

    idx = joined(2)
    order = idx.argsort()
    g = [joined(3)[order]] if any(p[3] for p in parts) else []
    return [joined(0)[order]], [joined(1)[order]], [idx[order]], g, all_skipped


def format_metrics_table(columns: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per metric, one column per entry of ``columns`` (e.g. splits).

    >>> print(format_metrics_table({"test": {"n": 4, "accuracy": 0.75}}))  # doctest: +NORMALIZE_WHITESPACE
    metric      test
    images         4
    accuracy  0.7500
    """
    names = list(columns)
    rows = [(label, [columns[c].get(key) for c in names]) for key, label in TABLE_ROWS if any(key in columns[c] for c in names)]
    rows.append(("confusion [[ff, fr], [rf, rr]]", [columns[c].get("confusion") for c in names]))
    rows = [r for r in rows if any(v is not None for v in r[1])]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    body = [["metric", *names]] + [[label, *(cell(v) for v in values)] for label, values in rows]
    width0 = max(len(r[0]) for r in body)
    widths = [max(len(r[i]) for r in body) for i in range(1, len(names) + 1)]
    return "\n".join(r[0].ljust(width0) + "".join("  " + v.rjust(w) for v, w in zip(r[1:], widths)) for r in body)
