"""An adaptive run's result rows and their summary: the columns of ``results.csv`` and the accuracies of ``summary.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dfrobust.evaluate.intervals import wilson_interval

#: The first columns of an adaptive ``results.csv``, in this order.
ADAPTIVE_COLUMNS = (
    "image", "label", "defense", "attack", "bpda", "eot", "eval_draws",
    "clean_p_real", "clean_pred", "clean_purified_pred",
    "nonadaptive_pred", "nonadaptive_fooled_any",
    "adv_p_real", "adv_pred", "adaptive_p_real", "adaptive_pred", "adaptive_correct_draws", "adaptive_fooled_any",
    "l2", "linf", "psnr", "seconds", "fitted_sigma",
)  # fmt: skip
#: The accuracies of summary.json and their results.csv column (a prediction, or ``*_fooled_any``: correct when 0).
ACCURACIES = {
    "accuracy_clean": "clean_pred",
    "accuracy_clean_purified": "clean_purified_pred",
    "accuracy_nonadaptive": "nonadaptive_pred",
    "accuracy_nonadaptive_worst": "nonadaptive_fooled_any",
    "accuracy_adaptive_unpurified": "adv_pred",
    "accuracy_adaptive": "adaptive_pred",
    "accuracy_adaptive_worst": "adaptive_fooled_any",
    "accuracy_adaptive_vote": "adaptive_vote_pred",
    "accuracy_adaptive_any_iterate": "adaptive_iterates_fooled_any",
    "accuracy_defended": "defended_fooled_any",
}


def adaptive_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``defense``, ``attack``, ``n`` and every accuracy of :data:`ACCURACIES` with ``<key>_ci`` (Wilson 95%) from result rows."""
    n = len(rows)
    out: dict[str, Any] = {
        "defense": rows[0]["defense"] if rows else None,
        "attack": rows[0]["attack"] if rows else None,
        "bpda": rows[0]["bpda"] if rows else None,
        "eot": int(rows[0]["eot"]) if rows else None,
        "eval_draws": int(rows[0]["eval_draws"]) if rows else None,
        "n": n,
    }
    for key, column in ACCURACIES.items():
        known = [r for r in rows if r.get(column) not in ("", None)]
        if not known:
            out[key], out[f"{key}_ci"], out[f"{key}_n"] = None, None, 0
            continue
        if column.endswith("fooled_any"):
            k = sum(not int(float(r[column])) for r in known)
        else:
            k = sum(int(float(r[column])) == int(float(r["label"])) for r in known)
        out[key] = k / len(known)
        out[f"{key}_ci"] = list(wilson_interval(k, len(known)))
        out[f"{key}_n"] = len(known)  # a rule may be measured on fewer images than n: its interval is on these
    sigmas = [float(r["fitted_sigma"]) for r in rows if r.get("fitted_sigma") not in ("", None)]
    out["fitted_sigma_mean"] = sum(sigmas) / len(sigmas) if sigmas else None
    secs = [float(r["seconds"]) for r in rows]
    out["attack_seconds_per_image"] = sum(secs) / n if n else None
    return out
