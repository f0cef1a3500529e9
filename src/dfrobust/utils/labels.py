"""Label conventions: dfrobust's own (fake = 0, real = 1, as the paper's code) and the other common one.

DeepfakeBench and CNNDetection label fake = 1, real = 0. Every function that takes labels from a
user takes ``labels=`` too, one of :data:`LABEL_CONVENTIONS`, and turns them into dfrobust's with
:func:`to_dfrobust_labels`; labels that cannot be read in the convention given are a one-line
:class:`~dfrobust.errors.DfrobustError`, never a silently flipped attack.
"""

from __future__ import annotations

from typing import Any

import torch

from dfrobust.constants import FAKE, REAL
from dfrobust.errors import DfrobustError

#: dfrobust's own convention (the default wherever labels are taken).
DFROBUST_LABELS = "fake=0"
#: Convention -> whether its labels are dfrobust's flipped. "fake=1" is DeepfakeBench's and CNNDetection's.
LABEL_CONVENTIONS: dict[str, bool] = {
    f"fake={FAKE}": False,
    f"real={REAL}": False,
    f"fake={REAL}": True,
    f"real={FAKE}": True,
}


def label_convention_flips(labels: str) -> bool:
    """Whether labels in convention ``labels`` are dfrobust's flipped (one-line error for an unknown convention)."""
    key = labels.replace(" ", "").lower() if isinstance(labels, str) else labels
    if key not in LABEL_CONVENTIONS:
        raise DfrobustError(
            f'labels={labels!r} is not a label convention; use labels="fake=0" (dfrobust\'s: fake 0, real 1) '
            'or labels="fake=1" (DeepfakeBench, CNNDetection: fake 1, real 0)'
        )
    return LABEL_CONVENTIONS[key]


def to_dfrobust_labels(y: Any, labels: str = DFROBUST_LABELS, n: int | None = None) -> torch.Tensor:
    """Labels ``y`` (one 0/1 per image, in convention ``labels``) as a ``long`` tensor in dfrobust's (fake = 0, real = 1).

    ``y`` may be a tensor, a NumPy array or a list of ``N`` numbers (``n``: the number of images,
    checked when given). A shape other than ``N``, or a value other than 0 and 1, is a one-line
    :class:`DfrobustError` that says what to pass.
    """
    flip = label_convention_flips(labels)
    try:
        t = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DfrobustError(f"labels must be one 0/1 number per image (a tensor or list), got a {type(y).__name__}") from exc
    if t.ndim != 1 or (n is not None and len(t) != n):
        want = f"({n},)" if n is not None else "(N,)"
        raise DfrobustError(
            f"labels must be one 0/1 number per image, shape {want}, got shape {tuple(t.shape)}; "
            "for one-hot or per-class scores pass their argmax"
        )
    if t.is_floating_point() and not (bool(torch.isfinite(t).all()) and bool((t == t.round()).all())):
        raise DfrobustError("labels must be whole numbers 0 and 1, got fractional values (probabilities? threshold them first)")
    t = t.long()
    bad = sorted({int(v) for v in t.unique().tolist()} - {0, 1})
    if bad:
        shown = ", ".join(map(str, bad[:5]))
        raise DfrobustError(
            f"labels hold {shown} besides 0 and 1; a detector's labels are fake/real: "
            f'pass 0/1 labels with labels="fake=0" (dfrobust\'s) or labels="fake=1" (DeepfakeBench\'s)'
        )
    return 1 - t if flip else t
