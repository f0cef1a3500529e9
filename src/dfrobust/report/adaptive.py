"""Beyond the paper, the evaluation the field requires: Table V (purifiers under non-adaptive and
adaptive attacks), robustness curves over the attack budget, Square's success against queries, and
the gradient-masking warnings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfrobust.report.plotting import plt, save_figure
from dfrobust.report.tables import Table, pct, rate
from dfrobust.utils.io import read_csv, read_record

#: The paper's FGSM budget, marked on the Linf curves.
PAPER_EPS = 0.02


def read_adaptive(folders: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    """``summary.json`` of each adaptive-attack folder that finished, by purifier."""
    return {name: read_record(f / "summary.json") for name, f in folders.items() if (f / "summary.json").is_file()}


def read_curves(folders: Mapping[str, Path]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Every robustness-curve row (with its model) and each model's gradient-masking warnings."""
    rows: list[dict[str, Any]] = []
    warnings: dict[str, list[str]] = {}
    for name, folder in folders.items():
        if not (folder / "curves.csv").is_file():
            continue
        for r in read_csv(folder / "curves.csv"):
            rows.append(
                {
                    **r,
                    "model": name,
                    "eps": float(r["eps"]),
                    "n": int(r["n"]),
                    "accuracy": float(r["accuracy"]),
                    "ci_low": float(r["ci_low"]),
                    "ci_high": float(r["ci_high"]),
                }
            )
        summary = read_record(folder / "summary.json") if (folder / "summary.json").is_file() else {}
        if summary.get("warnings"):
            warnings[name] = list(summary["warnings"])
    return rows, warnings


def _rate_ci(summary: Mapping[str, Any], key: str) -> str:
    value, ci = summary.get(key), summary.get(f"{key}_ci")
    if value is None:
        return "–"
    return f"{pct(value)} [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" if ci else pct(value)


#: Table V's rates: (column, summary key), the adaptive rules of a randomized defense last.
TABLE5_RATES = (
    ("clean, purified", "accuracy_clean_purified"),
    ("non-adaptive, worst of N", "accuracy_nonadaptive_worst"),
    ("adaptive, one draw", "accuracy_adaptive"),
    ("worst of N", "accuracy_adaptive_worst"),
    ("majority of N", "accuracy_adaptive_vote"),
    ("any iterate", "accuracy_adaptive_any_iterate"),
    ("defended", "accuracy_defended"),
)
#: What each adaptive row of results.json carries besides its rates.
ROW_KEYS = ("attack", "bpda", "eot", "eval_draws", "attack_purifier_cheaper", "sanity")


def attack_label(s: Mapping[str, Any]) -> str:
    """``APGD-CE, BPDA exact, EOT 1`` plus the attack-time purifier when it was cheaper than the defense."""
    text = f"{s.get('attack')}, BPDA {s.get('bpda')}, EOT {s.get('eot')}"
    seen, defense = (s.get("config") or {}).get("attack_purifier") or {}, (s.get("config") or {}).get("defense") or {}
    if s.get("attack_purifier_cheaper") and "classify_at" in seen:
        text += f"; the attack saw a cheaper DIP (T = {seen['classify_at']}, the defense's T = {defense.get('classify_at')})"
    sanity = s.get("sanity")
    if sanity and not sanity.get("passed"):
        text += f"; SANITY CHECK FAILED: unbounded, it fooled {sanity['fooled']} of {sanity['n']} (the attack is broken or masked)"
    elif sanity:
        text += f"; unbounded it fooled {sanity['fooled']} of {sanity['n']} (sanity check passed)"
    return text


def table5(
    adaptive: Mapping[str, Mapping[str, Any]], dip_nonadaptive: float | None, dip_n: int | None
) -> tuple[Table, list[dict[str, Any]]]:
    """Table V: each purifier under the attack that ignores it and under BPDA + EOT, by the rules of a randomized defense."""
    t = Table(
        "Table V. Purification under non-adaptive and adaptive attacks (accuracy on attacked fakes)",
        ["defense", "attack through the purifier", "images", "n", *(c for c, _ in TABLE5_RATES)],
        note="Images: the clean fakes behind the DIP study's perturbed fakes that fooled its classifier (fooled), plus "
        "further test fakes when adaptive.natural is set (all). Non-adaptive: the same attack crafted on the bare "
        "detector, then purified. Adaptive: crafted through the purifier (BPDA: the gradient used for it, 'exact' the "
        "true one; averaged over EOT draws of its randomness), then evaluated on N fresh purifications the attack never "
        "saw. Worst of N: fooled if any draw is (an attacker who may resubmit). Majority of N: fooled unless most draws "
        "are right. Any iterate: fooled if any attack iterate fooled its purification, or any draw is (DiffPure's "
        "BPDA+EOT rule; not measured, '–', when the attack saw a cheaper purifier than the defense). Defended: right "
        "on the purified clean image and on every draw of the attacked one. "
        "[low–high]: Wilson 95% interval."
        + (
            f" For reference, the DIP study's own non-adaptive accuracy on its fooled fakes: {pct(dip_nonadaptive)} (n = {dip_n})."
            if dip_nonadaptive is not None
            else ""
        ),
    )
    # too wide for a page: the attack and its non-adaptive numbers, then the adaptive ones
    t.keys = 3
    t.groups = [("clean and non-adaptive", ["n", *(c for c, _ in TABLE5_RATES[:2])]), ("adaptive", [c for c, _ in TABLE5_RATES[2:]])]
    rows = []
    for name, s in adaptive.items():
        if not s.get("n"):
            t.rows.append([name, "–", "–", "0", *(["–"] * len(TABLE5_RATES))])
            continue
        subsets = [("all", s)]
        fooled = s.get("on_study_fooled")
        if fooled and fooled.get("n") and fooled["n"] != s["n"]:
            subsets.append(("fooled", fooled))
        for label, part in subsets:
            t.rows.append([name, attack_label(s), label, str(part["n"]), *(_rate_ci(part, key) for _, key in TABLE5_RATES)])
        rows.append({
            "defense": name,
            "classifier": next(iter(s["model"]), None) if isinstance(s.get("model"), dict) else None,  # the detector behind it
            "n": s["n"],
            **{k: s.get(k) for k in ROW_KEYS},
            **{key: s.get(key) for _, key in TABLE5_RATES},
            "accuracy_nonadaptive": s.get("accuracy_nonadaptive"),
            **_intervals(s),
            "attack_purifier": (s.get("config") or {}).get("attack_purifier"),
            "on_study_fooled": {k: v for k, v in fooled.items() if k.startswith("accuracy") or k == "n"} if fooled else None,
        })  # fmt: skip
    return t, rows


def _intervals(s: Mapping[str, Any]) -> dict[str, Any]:
    """``<key>_n`` and ``<key>_ci`` of each rate of an adaptive summary (its stored Wilson interval, on its own n)."""
    out: dict[str, Any] = {}
    for key in (*(k for _, k in TABLE5_RATES), "accuracy_nonadaptive"):
        known = s.get(key) is not None
        # the stage's own count where it records one (a rule measured on fewer images), else the row's n
        out[f"{key}_n"] = s.get(f"{key}_n", s.get("n")) if known else None
        out[f"{key}_ci"] = s.get(f"{key}_ci") if known else None
    return out


def adaptive_reading(rows: Sequence[Mapping[str, Any]]) -> str:
    """What the adaptive numbers say about the paper's claim, whichever way they come out."""
    parts = []
    for r in rows:
        non, ada = r.get("accuracy_nonadaptive"), r.get("accuracy_adaptive_worst")
        if non is None or ada is None:
            continue
        if ada < non - 1e-9:
            verdict = "the adaptive attack breaks more of it"
        elif ada > non + 1e-9:
            verdict = "the adaptive attack did worse than the non-adaptive one (a weak adaptive budget, not a strong defense)"
        else:
            verdict = "the adaptive attack changed nothing at this budget"
        cheaper = " through a cheaper attack-time DIP" if r.get("attack_purifier_cheaper") else ""
        parts.append(
            f"{r['defense']}: {pct(non)} against the attack that ignores it, {pct(ada)} against {r.get('attack')} with BPDA "
            f"{r.get('bpda')}{cheaper} (worst of {r.get('eval_draws')} draws), n = {r['n']}: {verdict}"
        )
    if not parts:
        return "No adaptive attack ran (no fooled fakes, or the stage has not run yet)."
    return (
        "The paper claims DIP purification recovers most fooled fakes; that was measured against attacks that did not know "
        "the purifier. Against an attacker who knows it: " + "; ".join(parts) + ". A defense counts only as strong as the "
        "strongest attack that knows it, so the adaptive column is the one to quote."
    )


def curves_table(rows: Sequence[Mapping[str, Any]], subset: str = "fake") -> Table:
    """Accuracy under APGD per model, norm and radius (one subset of the images), with n and intervals."""
    keys = sorted({(r["norm"], r["eps"]) for r in rows if r["subset"] == subset}, key=lambda k: (k[0] != "linf", k[1]))
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["norm"], r["eps"]): r for r in rows if r["subset"] == subset}
    cols = [f"{n} {e * 255:.0f}/255" if n == "linf" else f"{n} {e:g}" for n, e in keys]
    t = Table(
        f"Robustness curves: accuracy under APGD on the {subset} test images",
        ["model", "n", *cols],
        note="eps 0 is the clean accuracy; Linf radii in pixel units of 1/255 (the paper's FGSM eps 0.02 is about 5/255). "
        "[low–high]: Wilson 95% interval.",
    )
    for m in models:
        n = next((r["n"] for k, r in by.items() if k[0] == m), "–")
        t.rows.append([m, str(n), *(rate(by[(m, *k)]["accuracy"], by[(m, *k)]["n"]) if (m, *k) in by else "–" for k in keys)])
    return t


def plot_curves(rows: Sequence[Mapping[str, Any]], norm: str, path: str | Path, subset: str = "fake") -> Path | None:
    """One figure per norm: accuracy vs radius for every detector, Wilson 95% intervals as bars."""
    mine = [r for r in rows if r["norm"] == norm and r["subset"] == subset]
    if not mine:
        return None
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    for model in dict.fromkeys(r["model"] for r in mine):
        pts = sorted((r for r in mine if r["model"] == model), key=lambda r: r["eps"])
        xs = [r["eps"] * (255 if norm == "linf" else 1) for r in pts]
        ys = [100 * r["accuracy"] for r in pts]
        err = [[100 * (r["accuracy"] - r["ci_low"]) for r in pts], [100 * (r["ci_high"] - r["accuracy"]) for r in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", markersize=3, capsize=2, linewidth=1, label=model)
    if norm == "linf":
        ax.axvline(PAPER_EPS * 255, color="black", linestyle=":", linewidth=0.9, label="the paper's FGSM eps 0.02")
        ax.set_xlabel("Linf radius (x 1/255)")
    else:
        ax.set_xlabel("L2 radius (pixels in [0, 1])")
    ax.set_ylim(-3, 103)
    ax.set_ylabel(f"accuracy on {subset} test images (%)")
    ax.set_title(f"Robustness curve, APGD {norm}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the axes: never over the curves
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def square_rows(attack_rows: Sequence[Mapping[str, str]]) -> dict[str, list[tuple[int, float, int]]]:
    """Per source model, Square's success rate (score-based, on the detector itself) against the query budget: ``[(queries, success rate, n), ...]``."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    by: dict[str, list[Mapping[str, str]]] = {}
    for r in attack_rows:
        if r["attack"].startswith("square") and r["setting"] == "whitebox" and r.get("queries") not in (None, ""):
            by.setdefault(r["source"], []).append(r)
    for model, rows in by.items():
        n = len(rows)
        hits = sorted(int(float(r["queries"])) for r in rows if int(float(r["success"])))
        budget = max(int(float(r["queries"])) for r in rows)
        grid = sorted({1, *hits, budget})
        out[model] = [(q, sum(h <= q for h in hits) / n, n) for q in grid]
    return out


def plot_square(curves: Mapping[str, Sequence[tuple[int, float, int]]], path: str | Path) -> Path | None:
    """Square's success rate vs queries, one line per detector."""
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    for model, pts in curves.items():
        ax.step([q for q, _, _ in pts], [100 * s for _, s, _ in pts], where="post", label=f"{model} (n = {pts[0][2]})")
    ax.set_xscale("log")
    ax.set_ylim(-3, 103)
    ax.set_xlabel("queries per image")
    ax.set_ylabel("fakes passed as real (%)")
    ax.set_title("Square attack (score-based, no gradients): success vs queries", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def warnings_lines(warnings: Mapping[str, Sequence[str]]) -> str | None:
    """The gradient-masking warnings, one list item per model and warning."""
    items = [f"- {model}: {w}" for model, ws in warnings.items() for w in ws]
    return "\n".join(items) if items else None
