"""Aggregates of attack result rows: per-target summaries, the paper's Table II (long and wide).

The functions take ``results.csv`` rows as dicts, either fresh from an attack run (numbers) or
read back with :func:`dfrobust.utils.io.read_csv` (strings), from one attack folder or several
concatenated, and return plain dict rows ready for :func:`dfrobust.utils.io.write_csv`.

>>> rows = read_csv("attacks/fgsm-vgg16/results.csv") + read_csv("attacks/cw-vgg16/results.csv")  # doctest: +SKIP
>>> write_csv("table2.csv", table2_rows(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import mean, median
from typing import Any

from dfrobust.constants import CLASS_NAMES
from dfrobust.evaluate.metrics import accuracy

#: The first columns of every ``results.csv`` (docs/architecture.md), in this order.
RESULT_COLUMNS = (
    "image", "label", "attack", "source", "target", "setting",
    "clean_p_real", "adv_p_real", "clean_pred", "adv_pred",
    "l2", "linf", "psnr", "ssim", "success", "seconds",
)  # fmt: skip

#: Why an image was not attacked (``""``: attacked): ``fooled by apgd-ce-linf`` in a survivors-only run
#: (:mod:`dfrobust.studies.attack_survivors`), whose skipped rows have no adversarial columns.
SKIPPED = "skipped"
#: The earlier attacks (result labels, ``+``-joined) whose survivors a survivors-only run attacked.
SURVIVORS_OF = "survivors_of"

#: Order of settings in tables and figures (the paper: blackbox before whitebox).
SETTINGS = ("blackbox", "whitebox")

Row = Mapping[str, Any]


def _f(value: Any) -> float:
    return float(value)


def _i(value: Any) -> int:
    return int(float(value))


def _has(row: Row, key: str) -> bool:
    return key in row and row[key] not in ("", None)


def is_attacked(row: Row) -> bool:
    """Whether a result row is of an image the attack crafted on (not one skipped because already fooled)."""
    return not _has(row, SKIPPED)


def attacked(rows: Iterable[Row]) -> list[Row]:
    """The rows of crafted images: every rate of a table counts only these (a skipped image has no verdict of its own)."""
    return [r for r in rows if is_attacked(r)]


def _finite_mean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if math.isfinite(v)]
    return mean(vals) if vals else None


def _finite_median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if math.isfinite(v)]
    return median(vals) if vals else None


def _accuracy(rows: Sequence[Row], pred_key: str) -> float:
    return accuracy([_i(r["label"]) for r in rows], [_i(r[pred_key]) for r in rows])


def _classes_of(rows: Sequence[Row]) -> str:
    labels = sorted({_i(r["label"]) for r in rows})
    return CLASS_NAMES[labels[0]] if len(labels) == 1 else "both"


def _group(rows: Iterable[Row], keys: Sequence[str]) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def group_stats(rows: Sequence[Row]) -> dict[str, Any]:
    """Aggregates of rows that share a target: accuracies, success rates, distances, image quality, time.

    ``success_rate`` counts every attacked image; ``success_rate_on_correct`` only the
    ``n_correct`` images the target classified correctly before the attack (``None`` when none),
    the rate the field reports, since an image already misclassified needs no attack.
    """
    correct = [r for r in rows if _i(r["clean_pred"]) == _i(r["label"])]
    stats: dict[str, Any] = {
        "n": len(rows),
        "images": _classes_of(rows),
        "clean_accuracy": _accuracy(rows, "clean_pred"),
        "perturbed_accuracy": _accuracy(rows, "adv_pred"),
        "success_rate": sum(_i(r["success"]) for r in rows) / len(rows),
        "n_correct": len(correct),
        "success_rate_on_correct": sum(_i(r["success"]) for r in correct) / len(correct) if correct else None,
        "mean_l2": _finite_mean(_f(r["l2"]) for r in rows),
        "median_l2": _finite_median(_f(r["l2"]) for r in rows),
        "mean_linf": _finite_mean(_f(r["linf"]) for r in rows),
        "mean_psnr": _finite_mean(_f(r["psnr"]) for r in rows),
        "mean_ssim": _finite_mean(_f(r["ssim"]) for r in rows),
        "seconds_per_image": _finite_mean(_f(r["seconds"]) for r in rows),
    }
    if all(_has(r, "jpeg_pred") for r in rows):
        stats["jpeg_quality"] = _i(rows[0]["jpeg_quality"])
        stats["jpeg_accuracy"] = _accuracy(rows, "jpeg_pred")
        stats["jpeg_clean_accuracy"] = _accuracy(rows, "jpeg_clean_pred")
    return stats


def target_aggregates(result_rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Per target model name: its setting and :func:`group_stats` (one attack folder's rows).

    The statistics count the attacked images only; a survivors-only run adds ``n_skipped`` (images an
    earlier attack had already fooled) and ``survivors_of``. A target whose images were all skipped has
    ``n = 0`` and no rates.
    """
    out: dict[str, dict[str, Any]] = {}
    for (target, setting), rows in _group(result_rows, ("target", "setting")).items():
        done = attacked(rows)
        out[target] = {"setting": setting, **(group_stats(done) if done else {"n": 0})}
        if _has(rows[0], SURVIVORS_OF):
            out[target].update(n_skipped=len(rows) - len(done), survivors_of=str(rows[0][SURVIVORS_OF]))
    return out


def table2_rows(result_rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The paper's Table II in long form: one row per (target model, attack, setting, source).

    Columns: ``model, attack, setting, source, images, n, clean_accuracy, perturbed_accuracy,
    n_correct, success_rate_on_correct`` (fractions in ``[0, 1]``; the last is the attack success
    rate on the ``n_correct`` images classified correctly before the attack, empty when none),
    then ``jpeg_quality, jpeg_accuracy`` when the run asked for a JPEG round trip, and
    ``source_members`` (``a+b``) when the source is an ensemble. ``images`` says which classes
    were attacked (the paper: ``fake``). A survivors-only attack's row counts the images it attacked
    (``n``: the survivors of ``survivors_of``, which it names) and ``n_skipped``, those already fooled.
    """
    table = []
    for (model, attack, setting, source), every in _group(result_rows, ("target", "attack", "setting", "source")).items():
        rows = attacked(every)
        if not rows:
            continue  # every image was fooled before this attack: it has no rate of its own
        stats = group_stats(rows)
        row = {
            "model": model,
            "attack": attack,
            "setting": setting,
            "source": source,
            "images": stats["images"],
            "n": stats["n"],
            "clean_accuracy": stats["clean_accuracy"],
            "perturbed_accuracy": stats["perturbed_accuracy"],
            "n_correct": stats["n_correct"],
            "success_rate_on_correct": stats["success_rate_on_correct"],
        }
        if "jpeg_accuracy" in stats:
            row.update(jpeg_quality=stats["jpeg_quality"], jpeg_accuracy=stats["jpeg_accuracy"])
        if _has(rows[0], "source_members"):
            row["source_members"] = rows[0]["source_members"]
        if _has(rows[0], SURVIVORS_OF):
            row.update(survivors_of=rows[0][SURVIVORS_OF], n_skipped=len(every) - len(rows))
        table.append(row)
    order = {s: i for i, s in enumerate(SETTINGS)}
    table.sort(key=lambda r: (r["model"], r["attack"], order.get(r["setting"], len(order)), r["source"]))
    return table


#: The source part of a column crafted on an ensemble (each model's own ensemble: one column for all).
ENSEMBLE_SOURCE = "ensemble"


def column_key(attack: str, setting: str, source: str, ambiguous: bool, ensemble: bool = False) -> str:
    """Column name of the wide table: ``fgsm_blackbox``; ``fgsm_blackbox_from_vgg16`` when one model
    was attacked from several sources; ``dimifgsm_blackbox_from_ensemble`` for images crafted on an
    ensemble (whatever its members, so that every model's ensemble transfer shares one column), with
    the ensemble's own name when one model was attacked from several ensembles."""
    key = f"{attack}_{setting}"
    if ensemble:
        return f"{key}_from_{source if ambiguous else ENSEMBLE_SOURCE}"
    return f"{key}_from_{source}" if ambiguous else key


def _cell_keys(table2: Sequence[Row]) -> list[tuple[str, str]]:
    """``(model, column key)`` of each :func:`table2_rows` row, in order: one rule for a cell's values and its n."""
    sources: dict[tuple, set] = {}
    for r in table2:
        sources.setdefault((r["model"], r["attack"], r["setting"], _has(r, "source_members")), set()).add(r["source"])
    keys = []
    for r in table2:
        ensemble = _has(r, "source_members")
        ambiguous = len(sources[(r["model"], r["attack"], r["setting"], ensemble)]) > 1
        keys.append((r["model"], column_key(r["attack"], r["setting"], r["source"], ambiguous, ensemble)))
    return keys


def table2_wide(table2: Sequence[Row]) -> list[dict[str, Any]]:
    """The paper's layout: one row per model, ``unperturbed`` then one column per attack and setting.

    Takes :func:`table2_rows` output. ``unperturbed`` is the clean accuracy measured on the
    largest group of images among the model's rows. Missing cells are absent from the dict.
    """
    wide: dict[str, dict[str, Any]] = {}
    best_n: dict[str, int] = {}
    for r, (model, key) in zip(table2, _cell_keys(table2)):
        entry = wide.setdefault(model, {"model": model})
        if _i(r["n"]) > best_n.get(model, -1):
            best_n[model] = _i(r["n"])
            entry["unperturbed"] = _f(r["clean_accuracy"])
        entry[key] = _f(r["perturbed_accuracy"])
    return list(wide.values())


def table2_counts(table2: Sequence[Row]) -> dict[str, dict[str, int]]:
    """The ``n`` behind each cell of :func:`table2_wide` (same keys; ``unperturbed``: the model's largest n).

    An attack may run on fewer images than the others (a preset's per-attack ``max_images``), so
    a cell's interval needs its own n; the keys come from the same rule as :func:`table2_wide`'s,
    so every cell there, an ensemble's included, has its count here.
    """
    counts: dict[str, dict[str, int]] = {}
    for r, (model, key) in zip(table2, _cell_keys(table2)):
        entry = counts.setdefault(model, {})
        entry["unperturbed"] = max(entry.get("unperturbed", 0), _i(r["n"]))
        entry[key] = _i(r["n"])
    return counts
