"""The verdict that opens the report and ``summary.md``: per detector, what a reader asks first.

One row per detector the study attacks as itself (a role trained with no defense recipe, or a
user's card): its clean accuracy, its robust accuracy at the study's threat model with the
interval and n, the median minimal perturbation of the unbounded attacks where one ran, the best
defense of that detector (its robust accuracy and what it costs in clean accuracy), and each
purifier's adaptive number (Table V's worst of N, with its BPDA mode; "non-adaptive only" when no
adaptive attack ran through it). Every number is read from what the report's own sections computed
(``RunResults.results``: the leaderboard, Table I, robust accuracy, the minimal perturbations,
Table V); none is computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dfrobust.report.document import Section
from dfrobust.report.sections import ReportSection, RunResults, register_section
from dfrobust.report.tables import Table, interval, pct, rate


def threat_label(tm: Mapping[str, Any] | None) -> str:
    """``Linf 0.02`` (the paper's FGSM budget when the run recorded none)."""
    tm = tm or {}
    return f"{str(tm.get('norm', 'linf')).replace('linf', 'Linf').replace('l2', 'L2')} {tm.get('eps', 0.02):g}"


def detector_families(roles: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each detector attacked as itself, with the roles that defend it, in the roles' order.

    A detector is a role with no defense recipe and nothing it starts from (the paper's VGG-16 and
    ResNet-18, a user's card). A defended role belongs to the detector its ``start_from`` chain
    reaches, else to the first detector of its architecture family.
    """
    by_name = {r["name"]: r for r in roles}
    bases = [r["name"] for r in roles if not r.get("start_from") and not r.get("recipe")]
    out: dict[str, list[str]] = {b: [] for b in bases}
    for r in roles:
        if r["name"] in out:
            continue
        root, seen = r, set()
        while root.get("start_from") in by_name and root["name"] not in seen:
            seen.add(root["name"])
            root = by_name[root["start_from"]]
        base = root["name"] if root["name"] in out else next((b for b in bases if by_name[b].get("family") == r.get("family")), None)
        if base is not None:
            out[base].append(r["name"])
    return out


def _robust(name: str, board: Mapping[str, Any], robust: Mapping[str, Any]) -> dict[str, Any]:
    """The leaderboard's robust accuracy of ``name`` (its stored robust-accuracy record for a detector the leaderboard leaves out)."""
    row = board.get(name)
    if row is not None and row.get("robust_accuracy") is not None:
        return {
            "accuracy": row["robust_accuracy"],
            "n": row.get("n_robust"),
            "interval": row.get("robust_interval"),
            "attacks": row.get("robust_attacks") or [],
        }
    rec = robust.get(name) or {}
    return {"accuracy": rec.get("accuracy"), "n": rec.get("n"), "interval": rec.get("interval"), "attacks": rec.get("attacks") or []}


def _purifiers(classifiers: set[str], board: Sequence[Mapping[str, Any]], table5: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each purifier in front of one of ``classifiers``: Table V's adaptive worst of N, or the leaderboard's non-adaptive number."""
    out: dict[str, dict[str, Any]] = {}
    for r in table5:
        if r.get("classifier") in classifiers and r.get("n"):
            out[r["defense"]] = {
                "purifier": r["defense"],
                "classifier": r["classifier"],
                "adaptive_worst": r.get("accuracy_adaptive_worst"),
                "adaptive_worst_ci": r.get("accuracy_adaptive_worst_ci"),
                "n": r["n"],
                "eval_draws": r.get("eval_draws"),
                "bpda": r.get("bpda"),
                "attack": r.get("attack"),
                "nonadaptive": r.get("accuracy_nonadaptive"),
                "nonadaptive_only": r.get("accuracy_adaptive_worst") is None,
            }
    for r in board:
        if r.get("kind") != "purifier" or r.get("classifier") not in classifiers:
            continue
        name = r.get("purifier") or r["defense"].split(" + ")[0]
        if name not in out:  # no adaptive attack ran through it: the study's non-adaptive number, labelled
            out[name] = {
                "purifier": name,
                "classifier": r.get("classifier"),
                "adaptive_worst": None,
                "n": r.get("n_attacked"),
                "nonadaptive": r.get("nonadaptive_accuracy"),
                "nonadaptive_ci": interval(r.get("nonadaptive_accuracy"), r.get("n_attacked")),
                "nonadaptive_only": True,
            }
    return list(out.values())


def verdict_rows(results: Mapping[str, Any], roles: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per detector from the report's numbers (``results.json`` so far); empty before any model is evaluated."""
    table1 = {r["model"]: r for r in results.get("table1") or [] if not r.get("group")}
    if not table1:
        return []
    board_rows = results.get("leaderboard") or []
    board = {r["defense"]: r for r in board_rows}
    robust = results.get("robust_accuracy") or {}
    minimal = results.get("minimal_perturbation") or []
    labels = {r["name"]: r.get("label", r["name"]) for r in roles}
    rows = []
    for name, defenses in detector_families(roles).items():
        if name not in table1:
            continue  # not evaluated yet
        own = board.get(name) or {}
        clean, n_clean = (own["clean_accuracy"], own.get("n_test")) if own else (table1[name].get("accuracy"), table1[name].get("n"))
        mins = [m for m in minimal if m["detector"] == name]
        shown = next((m for m in mins if m.get("median_l2") is not None), mins[0] if mins else None)
        family = {name, *defenses}
        best = None
        for r in board_rows:  # the leaderboard's order: robust accuracy, then clean accuracy, a collapsed detector last
            mine = r["defense"] in defenses or (r.get("kind") == "purifier" and r.get("classifier") in family)
            if mine and r.get("robust_accuracy") is not None and not (r.get("near_chance") or r.get("collapsed")):
                best = r
                break
        row: dict[str, Any] = {
            "detector": name,
            "label": labels.get(name, name),
            "clean_accuracy": clean,
            "n_clean": n_clean,
            "clean_accuracy_ci": interval(clean, n_clean),
            "robust": _robust(name, board, robust),
            "collapsed": own.get("collapsed") or ("near chance" if own.get("near_chance") else None),
            "minimal": {k: shown.get(k) for k in ("attack", "median_l2", "median_linf", "n", "n_success")} if shown else None,
            "best_defense": None,
            "purifiers": _purifiers(family, board_rows, results.get("adaptive") or []),
        }
        if best is not None:
            row["best_defense"] = {
                "defense": best["defense"],
                "label": best.get("label", best["defense"]),
                "kind": best.get("kind"),
                "robust_accuracy": best["robust_accuracy"],
                "n_robust": best.get("n_robust"),  # the n of its robust accuracy (a purifier's adaptive or study fakes)
                "robust_interval": best.get("robust_interval"),
                "nonadaptive_only": bool(best.get("nonadaptive_only")),
                "clean_accuracy": best.get("clean_accuracy"),
                "clean_accuracy_ci": best.get("clean_accuracy_ci"),
                "clean_cost": None if best.get("clean_accuracy") is None or clean is None else clean - best["clean_accuracy"],
                # a purifier's number is on its study's images (fakes that fooled the classifier): no like-for-like gain
                "robust_gain": None
                if row["robust"]["accuracy"] is None or best.get("kind") == "purifier"
                else best["robust_accuracy"] - row["robust"]["accuracy"],
            }
        rows.append(row)
    return rows


def _interval(value: Any, n: Any, interval: Sequence[Any] | None) -> str:
    """``12.5% [3.5–36.0]`` from a stored interval (else from ``n``)."""
    if value is None:
        return "–"
    if interval and None not in interval:
        return f"{pct(value)} [{100 * interval[0]:.1f}–{100 * interval[1]:.1f}]"
    return rate(value, n)


def _robust_text(row: Mapping[str, Any]) -> str:
    r = row["robust"]
    if r["accuracy"] is None:
        return "no bounded attack at the threat model ran"
    text = f"{_interval(r['accuracy'], r['n'], r['interval'])} (n = {r['n']})"
    return text + (f"; collapsed: {row['collapsed']}" if row.get("collapsed") else "")


def _minimal_text(m: Mapping[str, Any] | None) -> str:
    from dfrobust.attacks.base import attack_display

    if not m:
        return "– (no unbounded attack ran)"
    who = attack_display(m["attack"])
    if m.get("median_l2") is None:
        return f"not reached: {m['n_success']}/{m['n']} flipped by {who}"
    return f"L2 {m['median_l2']:.3f}, Linf {m['median_linf']:.4f} ({who}, n = {m['n']})"


def _defense_text(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "none run"
    robust = _interval(d["robust_accuracy"], d["n_robust"], d.get("robust_interval"))
    text = f"{d['defense']}: {robust} (n = {d['n_robust']})" + (" (non-adaptive only)" if d["nonadaptive_only"] else "")
    if d.get("robust_gain") is not None:
        text += f", {100 * d['robust_gain']:+.1f} pts robust" + (" (no better than undefended)" if d["robust_gain"] <= 0 else "")
    if d["clean_cost"] is not None:
        where = " on its study's images" if d["kind"] == "purifier" else ""
        text += f"; clean accuracy {pct(d['clean_accuracy'])}{where} ({-100 * d['clean_cost']:+.1f} pts)"
    return text


def _purifier_text(p: Mapping[str, Any]) -> str:
    if p["nonadaptive_only"]:
        return f"{p['purifier']}: {rate(p['nonadaptive'], p['n'])} (n = {p['n']}), non-adaptive only"
    return (
        f"{p['purifier']}: {_interval(p['adaptive_worst'], p['n'], p.get('adaptive_worst_ci'))} adaptive, worst of {p.get('eval_draws')} "
        f"(n = {p['n']}; BPDA {p.get('bpda')})"
    )


def verdict_table(rows: Sequence[Mapping[str, Any]], threat: str) -> Table:
    """The verdict as one table row per detector."""
    t = Table(
        "Verdict per detector",
        ["detector", "clean accuracy (n)", f"robust accuracy @ {threat}", "minimal perturbation (median)", "best defense", "purifiers"],
        note=f"Robust accuracy: attacked fakes still detected after every bounded attack at {threat} on the detector itself "
        "(gradient and score-based; the leaderboard's number). Minimal perturbation: median smallest perturbation that "
        "flipped an attacked fake (unbounded attacks). Best defense: the leaderboard's best row that defends the detector, "
        "with the change in robust accuracy and its clean accuracy with the change from the undefended detector, in points. Purifiers: Table V's adaptive "
        "accuracy (worst of N evaluation draws; BPDA: the gradient the attack used), or the non-adaptive one when no "
        "adaptive attack ran. [low–high]: Wilson 95% interval.",
    )
    for r in rows:
        t.rows.append(
            [
                r["label"],
                f"{rate(r['clean_accuracy'], r['n_clean'])} ({r['n_clean'] or '–'})",
                _robust_text(r),
                _minimal_text(r["minimal"]),
                _defense_text(r["best_defense"]),
                "; ".join(map(_purifier_text, r["purifiers"])) or "–",
            ]
        )
    return t


def verdict_lines(rows: Sequence[Mapping[str, Any]], threat: str) -> list[str]:
    """The verdict in words, one Markdown bullet per detector (``summary.md``)."""
    out = []
    for r in rows:
        parts = [
            f"{r['label']}: clean accuracy {rate(r['clean_accuracy'], r['n_clean'])} (n = {r['n_clean']})",
            f"Robust accuracy at {threat}: {_robust_text(r)}",
        ]
        if r["minimal"]:
            parts.append(f"Minimal perturbation: {_minimal_text(r['minimal'])}")
        parts.append(f"Best defense: {_defense_text(r['best_defense'])}")
        if r["purifiers"]:
            parts.append("Purifiers: " + "; ".join(map(_purifier_text, r["purifiers"])))
        out.append("- " + ". ".join(parts) + ".")
    return out


@register_section
class VerdictSection(ReportSection):
    """The verdict per detector, opening the report (a ``--seeds`` report has none: its seeds' reports do)."""

    name = "verdict"
    title = "Verdict"
    order = 0
    first = True

    def build(self, run: RunResults) -> Section | None:
        rows = verdict_rows(run.results, run.plan.get("roles") or [])
        if not rows:
            return None
        threat = threat_label(run.results.get("threat_model"))
        return Section(
            self.title,
            [
                f"Per detector, at the study's threat model ({threat}): how it does clean, what survives the attacks, and "
                "what its best defense buys and costs. The details follow.",
                verdict_table(rows, threat),
            ],
        )

    def results(self, run: RunResults) -> Any:
        rows = verdict_rows(run.results, run.plan.get("roles") or [])
        return rows or None
