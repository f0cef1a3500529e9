"""The defense leaderboard: every defended detector on equal terms, and the robustness/accuracy trade-off figure.

Rows come from what the stages wrote: the models' sidecars (clean metrics, training time), the
attack tables (whitebox and blackbox accuracy on attacked fakes), the certification summaries
and the DIP study. Robust accuracy is AutoAttack's, at the study's threat model
(:mod:`dfrobust.report.verdicts`): per attacked fake, right only if it survives every bounded
attack at that radius; unbounded attacks (CW) never enter it. A purifier's row says whether the
attack knew the purifier. Rows rank by robust accuracy, then clean accuracy; a collapsed detector
(near chance, or one class never predicted) ranks last with its diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from statistics import mean
from typing import Any

from dfrobust.attacks.base import attack_display
from dfrobust.evaluate.collapse import collapsed
from dfrobust.evaluate.robustness import RobustAccuracy
from dfrobust.report.attack_figures import setting_label
from dfrobust.report.collected import CollectedRun
from dfrobust.report.plotting import plt, save_figure
from dfrobust.report.study_tables import Table2, chained_attacks, own_n
from dfrobust.report.tables import Table, interval, pct, rate

#: Groups of roles the paper itself tried (marked in the table).
PAPER_GROUPS = ("paper", "lipschitz", "blur")
#: Certified radii shown (L2, pixels in [0, 1]).
RADII = (0.25, 0.5)
#: Below this clean AUROC a detector barely tells real from fake: a detector that calls every image fake
#: keeps every attacked fake "detected", so its robust accuracy says nothing and it ranks last.
NEAR_CHANCE_AUROC = 0.6
#: The mark beside a robust accuracy whose detector failed a gradient-masking check (explained in the table's note).
MASKING_FLAG = "[masking?]"


def _epoch_seconds(meta: Mapping[str, Any]) -> float | None:
    hist = [float(h["seconds"]) for h in meta.get("history", []) if h.get("seconds")]
    return mean(hist) if hist else None


def _cost(meta: Mapping[str, Any], base: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """Training cost per epoch relative to plain training, and where the number comes from."""
    adv = meta.get("adversarial") or {}
    if adv.get("cost_multiplier"):
        return float(adv["cost_multiplier"]), "measured step against step"
    mine, theirs = _epoch_seconds(meta), _epoch_seconds(base) if base else None
    if mine and theirs:
        return mine / theirs, "epoch time against the plain model's"
    return None, ""


def leaderboard_rows(
    run: CollectedRun,
    table2: Table2 | None,
    robust: Mapping[str, RobustAccuracy] | None = None,
    threat_model: Mapping[str, Any] | None = None,
    masking: Mapping[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per defended detector (and the DIP purifier in front of its classifier), sorted by robust accuracy.

    ``table2``: Table II as the report computed it (``None`` before any attack ran): each detector's accuracy
    per attack and the n of each cell.
    ``robust``: per detector, robust accuracy at ``threat_model`` (:func:`dfrobust.report.verdicts.robust_by_target`).
    ``masking``: per detector, its gradient-masking warnings (:func:`dfrobust.report.verdicts.masking_by_target`;
    default: the robustness curves' warnings, ``run.curve_warnings``); a row with any is flagged.
    """
    robust = robust or {}
    masking = run.curve_warnings if masking is None else masking
    roles = {r["name"]: r for r in run.roles}
    models = run.models
    wide = table2.wide if table2 is not None else {}
    counts = table2.counts if table2 is not None else {}  # an attack may run on fewer images than the others
    chained = chained_attacks(table2.rows) if table2 is not None else {}  # survivors-only attacks: their cells' n are survivors
    base_name = next((r["name"] for r in run.roles if r.get("sample_source")), None)
    rows = []
    for name, meta in models.items():
        role = roles.get(name, {})
        if role.get("group") == "paper" and name != base_name:
            continue  # the other architecture is not a defense of the ResNet
        cols = wide.get(name, {})
        white = {k: v for k, v in cols.items() if k.endswith("_whitebox") and v is not None}
        black = {k: v for k, v in cols.items() if "_blackbox" in k and v is not None}
        worst_black = min(black, key=lambda k: black[k]) if black else None  # its n is that column's, not the model's
        test = meta.get("metrics", {}).get("test", {})
        cost, cost_source = _cost(meta, models.get(role.get("start_from") or "") if role.get("start_from") else None)
        row: dict[str, Any] = {
            "defense": name,
            "label": role.get("label", name),
            "paper": role.get("group") in PAPER_GROUPS,
            "kind": "trained",
            "n_test": test.get("n"),
            "clean_accuracy": test.get("accuracy"),
            "auroc": test.get("auroc"),
            "n_attacked": counts.get(name, {}).get("unperturbed"),
            "n_whitebox": {k: counts.get(name, {}).get(k) for k in white},
            "whitebox": white,
            "survivors_of": {k: chained[a] for k in white if (a := k.removesuffix("_whitebox")) in chained},
            "threat_model": dict(threat_model or {}),
            "robust_accuracy": robust[name].accuracy if name in robust else None,
            "n_robust": robust[name].n if name in robust else None,
            "robust_interval": list(robust[name].interval) if name in robust else None,
            "robust_attacks": robust[name].attacks if name in robust else [],
            "worst_whitebox": min(white.values()) if white else None,
            "blackbox": black[worst_black] if worst_black else None,
            "n_blackbox": counts.get(name, {}).get(worst_black) if worst_black else None,
            "adaptive": None,
            # a user's card was not trained here: it has no training cost to compare
            "cost_multiplier": None if role.get("card") else 1.0 if name == base_name else cost,
            "cost_source": "not trained (a detector card)" if role.get("card") else "the baseline" if name == base_name else cost_source,
            "near_chance": test.get("auroc") is not None and float(test["auroc"]) < NEAR_CHANCE_AUROC,
            "collapsed": collapsed(test).reason or None,
            "masking_warnings": list(masking.get(name) or []),
        }
        cert = run.certify.get(name)
        if cert:
            by_radius = {round(float(c["radius"]), 4): c for c in cert["certified_accuracy"]}
            row["certified"] = {r: by_radius.get(r) for r in RADII}
            row["certified_n"] = cert.get("n_images")
        rows.append(row)
    dip = run.dip
    if dip is not None:
        t3 = {(r["method"], float(r["threshold"])): r for r in dip.table3}
        t4 = {r["category"]: r for r in dip.table4}
        thr = 0.25 if ("dip", 0.25) in t3 else 0.5
        perturbed = [t4.get(c) for c in ("perturbed/fake-wrong", "perturbed/fake-correct") if t4.get(c)]
        n_p = sum(int(r["n"]) for r in perturbed)
        acc_p = sum(float(r[f"dip@{thr:g}"]) * int(r["n"]) for r in perturbed if int(r["n"])) / n_p if n_p else None
        clean = [t4.get(c) for c in ("clean/fake-correct", "clean/real-correct") if t4.get(c) and int(t4[c]["n"])]
        n_c = sum(int(r["n"]) for r in clean)
        role = dip.role
        ada = run.adaptive.get("dip") or {}
        adaptive = ada.get("accuracy_adaptive_worst")
        adaptive_wins = adaptive is not None and (acc_p is None or adaptive <= acc_p)
        rows.append(
            {
                "defense": f"dip + {role.get('model')}",
                "label": f"DIP purification in front of {role.get('label', role.get('model'))} (threshold {thr:g})",
                "paper": True,
                "kind": "purifier",
                "purifier": "dip",
                "classifier": role.get("model"),
                "n_test": n_c,
                "clean_accuracy": sum(float(r[f"dip@{thr:g}"]) * int(r["n"]) for r in clean) / n_c if n_c else None,
                "auroc": float(t3[("dip", thr)]["auroc"]) if ("dip", thr) in t3 and t3[("dip", thr)]["auroc"] not in ("", None) else None,
                "n_attacked": n_p,
                "whitebox": {},
                "threat_model": dict(threat_model or {}),
                # the worst of the attacks that ran: the adaptive one (it knows the purifier) and the study's (it does not)
                "robust_accuracy": adaptive if adaptive_wins else acc_p,
                # the n of whichever number is shown: the adaptive attack's fakes or the study's perturbed ones
                "n_robust": int(ada["n"]) if adaptive_wins else (n_p if acc_p is not None else None),
                "nonadaptive_accuracy": acc_p,
                "n_nonadaptive": n_p,
                "blackbox": None,
                "adaptive": adaptive,
                "n_adaptive": int(ada["n"]) if adaptive is not None else None,
                "adaptive_bpda": ada.get("bpda"),
                "cost_multiplier": None,
                "cost_source": "",
                "nonadaptive_only": adaptive is None,
            }
        )

    for r in rows:  # results.json: a Wilson 95% interval beside every rate, on the rate's own n (n_test, n_robust, ...)
        r["clean_accuracy_ci"] = interval(r["clean_accuracy"], r.get("n_test"))
        r["robust_accuracy_ci"] = r.get("robust_interval") or interval(r["robust_accuracy"], r.get("n_robust"))
        r["whitebox_ci"] = {k: interval(v, (r.get("n_whitebox") or {}).get(k)) for k, v in r["whitebox"].items()}
        r["blackbox_ci"] = interval(r["blackbox"], r.get("n_blackbox"))
        r["adaptive_ci"] = interval(r["adaptive"], r.get("n_adaptive"))
        if r["kind"] == "purifier":
            r["nonadaptive_accuracy_ci"] = interval(r["nonadaptive_accuracy"], r.get("n_nonadaptive"))

    def rank(r: dict[str, Any]) -> tuple[bool, float, float]:
        robust, clean = r["robust_accuracy"], r.get("clean_accuracy")
        return (not (r.get("near_chance") or r.get("collapsed")), -1.0 if robust is None else robust, -1.0 if clean is None else clean)

    rows.sort(key=rank, reverse=True)
    return rows


def leaderboard_table(rows: list[dict[str, Any]]) -> Table:
    """The leaderboard as a report table."""
    attacks = sorted({k.removesuffix("_whitebox") for r in rows for k in r["whitebox"]})
    chained = {k.removesuffix("_whitebox"): v for r in rows for k, v in (r.get("survivors_of") or {}).items()}
    tm = next((r["threat_model"] for r in rows if r.get("threat_model")), {})
    radius = f"{tm['norm'].replace('linf', 'Linf').replace('l2', 'L2')} {tm['eps']:g}" if tm else "the study's radius"
    t = Table(
        f"Defense leaderboard (threat model: {radius})",
        [
            "defense",
            "paper's",
            "clean accuracy (n)",
            "AUROC",
            *(
                f"{attack_display(a)} {setting_label(a, 'whitebox')}"
                + (f" on survivors of {' + '.join(attack_display(e) for e in chained[a].split('+'))}" if a in chained else "")
                for a in attacks
            ),
            f"robust accuracy @ {radius}",
            "best blackbox transfer",
            "adaptive (purifier)",
            *(f"certified @ L2 {r:g}" for r in RADII),
            "training cost",
        ],
        note="Accuracy on attacked fake test images unless stated (the DIP row's clean accuracy is on its study's clean images); "
        f"robust accuracy = AutoAttack's definition at {radius}: an attacked fake counts only if it is detected clean and after "
        "every bounded attack on the detector itself at that radius (gradient and score-based; n = the fakes every such attack saw); "
        "CW-L2's unbounded search never enters it (see the minimal-perturbation table). As in AutoAttack, an attack "
        "'on survivors' ran only on the fakes the earlier attacks of its chain left correct (its cell: accuracy on those, "
        "with their n); a fake it skipped counts as fooled. For the DIP purifier: the lower of "
        "its accuracy under the adaptive attack through it (Table V, worst of its evaluation draws) and the DIP study's "
        "non-adaptive accuracy on its perturbed fakes (two different sets of fakes: the rates, not the images, are compared); "
        "without an adaptive attack, the non-adaptive one, labelled. "
        "[low–high]: Wilson 95% interval on the cell's own n; (n=...) after a robust or adaptive accuracy, and after an "
        "attack's cell whose attacked fakes number other than the detector's most-attacked column. "
        "Training cost: per epoch relative to plain training. Sorted by robust accuracy, "
        f"then clean accuracy; a collapsed detector (clean AUROC below {NEAR_CHANCE_AUROC:g}, or one class almost never "
        "predicted) ranks last: its accuracy on attacked fakes is no robustness.",
    )
    # too wide for a page (17 columns): robustness first, then each attack, then certificates and cost
    t.groups = [
        ("robustness", t.columns[1:4] + [t.columns[4 + len(attacks)]]),
        ("accuracy under each attack on the detector itself", t.columns[4 : 4 + len(attacks)]),
        ("transfer, certificates and cost", t.columns[5 + len(attacks) :]),
    ]
    for r in rows:
        n = r.get("n_attacked")
        cert = r.get("certified") or {}
        cells = [
            r["label"],
            "yes" if r["paper"] else "",
            f"{rate(r['clean_accuracy'], r['n_test'])} ({r['n_test'] or '–'})",
            f"{r['auroc']:.3f}" if r.get("auroc") is not None else "–",
            *(
                rate(r["whitebox"].get(f"{a}_whitebox"), (r.get("n_whitebox") or {}).get(f"{a}_whitebox"))
                + own_n((r.get("n_whitebox") or {}).get(f"{a}_whitebox"), n)
                if f"{a}_whitebox" in r["whitebox"]
                else "–"
                for a in attacks
            ),
            rate(r["robust_accuracy"], r.get("n_robust"))
            + (f" (n={r['n_robust']})" if r.get("n_robust") is not None else "")
            + (" (non-adaptive)" if r.get("nonadaptive_only") else "")
            + (
                f" (lower of adaptive {pct(r['adaptive'])}, BPDA {r['adaptive_bpda']}, and non-adaptive {pct(r['nonadaptive_accuracy'])})"
                if r.get("adaptive_bpda")
                else ""
            )
            + (f" (collapsed: {r['collapsed']})" if r.get("collapsed") else " (near chance)" if r.get("near_chance") else "")
            + (f" {MASKING_FLAG}" if r.get("masking_warnings") else ""),
            rate(r["blackbox"], r.get("n_blackbox")) + own_n(r.get("n_blackbox"), n) if r["blackbox"] is not None else "–",
            rate(r["adaptive"], r.get("n_adaptive")) + (f" (n={r['n_adaptive']})" if r.get("n_adaptive") is not None else "")
            if r["adaptive"] is not None
            else ("not run" if r["kind"] == "purifier" else "n/a"),
            *(rate(cert[rad]["accuracy"], cert[rad]["n"]) if cert.get(rad) else "–" for rad in RADII),
            f"{r['cost_multiplier']:.1f}x"
            if r.get("cost_multiplier")
            else "not trained"
            if r.get("cost_source", "").startswith("not trained")
            else "–",
        ]
        t.rows.append(cells)
    flagged = [r for r in rows if r.get("masking_warnings")]
    if flagged:
        t.note += (
            f" {MASKING_FLAG}: a gradient-masking check failed for this detector (Carlini et al. 2019), so its robust "
            "accuracy may overstate its robustness: "
            + "; ".join(f"{r['label']}: {' / '.join(r['masking_warnings'])}" for r in flagged)
            + "."
        )
    return t


def plot_tradeoff(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Robust accuracy against clean accuracy per defense, marker size = training cost."""
    pts = [r for r in rows if r["robust_accuracy"] is not None and r["clean_accuracy"] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 5.0))
    from matplotlib.lines import Line2D

    # each point carries its number, the names go in a legend beside the axes: names never overprint, and points that
    # (nearly) coincide share one label "1, 3"
    clusters: list[tuple[float, float, list[int]]] = []
    handles = []
    for i, r in enumerate(pts, start=1):
        x, y = 100 * r["clean_accuracy"], 100 * r["robust_accuracy"]
        size = 40 * (r.get("cost_multiplier") or 1.0)
        marker, color = ("o" if r["kind"] == "trained" else "s"), ("tab:blue" if r["paper"] else "tab:orange")
        ax.scatter(x, y, s=size, alpha=0.7, marker=marker, edgecolor="black", linewidth=0.6, color=color)
        handles.append(Line2D([], [], marker=marker, linestyle="", color=color, markeredgecolor="black", label=f"{i}  {r['defense']}"))
        near = next((c for c in clusters if abs(c[0] - x) < 4 and abs(c[1] - y) < 4), None)
        if near:
            near[2].append(i)
        else:
            clusters.append((x, y, [i]))
    for x, y, ids in clusters:
        ax.annotate(", ".join(map(str, ids)), (x, y), fontsize=7, xytext=(5, 4), textcoords="offset points")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="defense", title_fontsize=8)
    ax.set_xlabel("clean accuracy, whole test split (%)")
    ax.set_ylabel("robust accuracy on attacked fakes (%)")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_title("Trade-off: robustness vs clean accuracy (blue: the paper's defenses; marker area: training cost)", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
