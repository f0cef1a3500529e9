"""Transfer (blackbox) attacks side by side: the paper's plain FGSM beside the strongest transfer found.

The paper measures blackbox robustness with plain FGSM and CW crafted on one other detector. A
detector that survives those may still fall to the transfer attacks the field uses (MI-FGSM,
DI-MI-FGSM, an ensemble of surrogates): this table puts every transfer of the run beside the
paper's, so the strongest one is what a reader quotes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dfrobust.attacks.base import attack_display
from dfrobust.report.tables import Table, interval, rate

#: The paper's blackbox attack.
PLAIN = "fgsm"


def attack_label(attack: str) -> str:
    """``dimifgsm`` -> ``DI-MI-FGSM``; the paper's attacks by their names in the paper."""
    return attack_display(attack)


def transfer_rows(long_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per target model with blackbox results: every transfer (attack, source, n, accuracy), the paper's plain
    FGSM (its strongest source when there are several) and the strongest transfer of all.

    Takes :func:`dfrobust.studies.attack_tables.table2_rows` output; accuracies are on the attacked fakes.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in long_rows:
        if r["setting"] == "blackbox" and r["perturbed_accuracy"] not in ("", None):
            by_model.setdefault(str(r["model"]), []).append(
                {
                    "attack": str(r["attack"]),
                    "source": str(r["source"]),
                    "n": int(r["n"]),
                    "accuracy": float(r["perturbed_accuracy"]),
                    "accuracy_ci": interval(r["perturbed_accuracy"], r["n"]),  # Wilson 95% on this transfer's own n
                }
            )
    rows = []
    for model, entries in by_model.items():
        # ties go to the paper's attack, then by name: the strongest is only "stronger" when it is
        def weakest_first(e: dict[str, Any]) -> tuple:
            return e["accuracy"], e["attack"] != PLAIN, e["attack"], e["source"]

        plain = [e for e in entries if e["attack"] == PLAIN]
        rows.append(
            {
                "model": model,
                "transfers": sorted(entries, key=weakest_first),
                "plain": min(plain, key=weakest_first) if plain else None,
                "strongest": min(entries, key=weakest_first),
            }
        )
    return rows


def transfer_table(rows: Sequence[Mapping[str, Any]], order: Sequence[str]) -> Table:
    """The table of :func:`transfer_rows`, models in ``order``: one column per transfer attack (its strongest source)."""
    attacks = sorted({e["attack"] for r in rows for e in r["transfers"]}, key=lambda a: (a != PLAIN, a))
    t = Table(
        "Transfer attacks: the paper's plain FGSM beside the strongest transfer",
        ["model", "n", *(f"{attack_label(a)} blackbox" for a in attacks), "strongest transfer", "attack (source)"],
        note="Accuracy on fake images crafted on another detector (lower = a stronger attack); n: attacked fakes "
        "(a cell attacked on another number says so); [low–high]: Wilson 95% interval; with several sources, the "
        "strongest source per attack. The paper measured blackbox robustness with plain FGSM and CW only.",
    )
    by_model = {r["model"]: r for r in rows}
    for name in [m for m in order if m in by_model]:
        r = by_model[name]
        n = (r["plain"] or r["strongest"])["n"]

        def cell(e: Mapping[str, Any]) -> str:
            return rate(e["accuracy"], e["n"]) + (f" (n={e['n']})" if e["n"] != n else "")

        cells = []
        for a in attacks:
            best = min((e for e in r["transfers"] if e["attack"] == a), key=lambda e: e["accuracy"], default=None)
            cells.append(cell(best) if best else "–")
        s = r["strongest"]
        t.rows.append([name, str(n), *cells, cell(s), f"{attack_label(s['attack'])} ({s['source']})"])
    return t
