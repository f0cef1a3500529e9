"""``summary.md``: the verdict per detector, then Table II and the DIP headline in a few lines (the README's table)."""

from __future__ import annotations

from typing import Any

from dfrobust.attacks.base import attack_info
from dfrobust.report import paper
from dfrobust.report.collected import CollectedRun
from dfrobust.report.study_tables import _both, _paper_row, column_label, own_n, paper_table2, table2_columns
from dfrobust.report.tables import md_escape, pct
from dfrobust.report.transfer import attack_label


def summary_markdown(run: CollectedRun, results: dict[str, Any]) -> str:
    """A short Markdown summary (the verdict, Table II and the DIP headline) for a README or a chat message.

    ``results``: the numbers the report computed (``results.json``); ``run``: the run they came from (its
    roles, models, certificates, stage records and settings).
    """
    from dfrobust.report.sections.verdict import verdict_lines

    lines = []
    verdict = (results.get("sections") or {}).get("verdict")
    if verdict:  # the report's verdict section, read back: the same numbers in words
        lines += [f"Verdict at {_threat(results)}, per detector:", "", *verdict_lines(verdict, _threat(results)), ""]
    wide = results.get("table2_wide", {})
    if wide:
        # the paper's attacks both ways, the others whitebox only: their transfers get the line below
        columns = [
            c
            for c in table2_columns(wide)
            if c == "unperturbed"
            or attack_info(c.split("_")[0]).paper
            or (c.endswith("_whitebox") and not attack_info(c.split("_")[0]).transfers)
        ]
        counts = results.get("table2_wide_n", {})  # Table II's own n per cell (study_tables.Table2.counts)
        lines += ["| model | n | " + " | ".join(map(column_label, columns)) + " |", "|---" * (len(columns) + 2) + "|"]
        for name, row in wide.items():
            vals = paper_table2(_paper_row(run, name), columns)
            n = counts.get(name, {})
            lines.append(
                f"| {md_escape(name)} | {n.get('unperturbed') or '–'} | "
                + " | ".join(_both(row.get(k), vals[i], n.get(k)) + own_n(n.get(k), n.get("unperturbed")) for i, k in enumerate(columns))
                + " |"
            )
        lines += [
            "",
            "Accuracy on the attacked fake test images (n of them; every cell's interval uses its own n, written (n=...) "
            "where it differs), clean "
            "and perturbed, with a Wilson 95% interval; in parentheses the paper's numbers.",
        ]
    rank = {name: i for i, name in enumerate(wide)}  # Table II's order
    transfers = sorted(
        (r for r in results.get("transfer", []) if r["plain"] and r["strongest"]["attack"] != r["plain"]["attack"]),
        key=lambda r: rank.get(r["model"], len(rank)),
    )
    if transfers:
        lines += [
            "",
            "Strongest transfer (blackbox) beside the paper's plain FGSM, accuracy on the attacked fakes: "
            + "; ".join(
                f"{r['model']} {pct(r['strongest']['accuracy'])} ({attack_label(r['strongest']['attack'])} from "
                f"{r['strongest']['source']}) vs {pct(r['plain']['accuracy'])}"
                for r in transfers
            )
            + ".",
        ]
    models = run.models
    if models:
        parts = []
        for name, meta in models.items():
            arch = f" ({meta['arch']})" if meta.get("arch") and not name.startswith(meta["arch"]) else ""
            m = meta.get("metrics", {})
            parts.append(
                f"{name}{arch} {pct(m.get('test', {}).get('accuracy'))}, gradient norm {m.get('input_grad_norm', float('nan')):.2f}"
            )
        lines += ["", "Whole test split, both classes (Table I): " + "; ".join(parts) + "."]
    t3 = {(r["method"], float(r["threshold"])): r for r in results.get("table3", [])}
    if ("dip", 0.25) in t3 and ("baseline", 0.5) in t3:
        wrong = next((r for r in results.get("table4", []) if r["category"] == "perturbed/fake-wrong"), {})
        dip, theirs = t3[("dip", 0.25)], dict(zip(paper.TABLE3_COLUMNS, paper.TABLE3["dip@0.25"]))
        lines += [
            "",
            f"DIP defense ({dip['n']} images, threshold 0.25): accuracy {pct(dip['accuracy'])} "
            f"(paper {theirs['accuracy']:.1f}%) vs {pct(t3[('baseline', 0.5)]['accuracy'])} undefended "
            f"(paper {paper.TABLE3['baseline'][0]:.1f}%); on perturbed fakes that fooled the detector: "
            f"{pct(wrong.get('dip@0.25'))} (paper {paper.TABLE4_TEXT['perturbed fake-wrong, DIP @0.25']:.0f}%); "
            f"real images kept as real: {pct(dip['real_recall'])} (paper {theirs['real_recall']:.1f}%).",
        ]
    for r in results.get("adaptive", []):
        if r.get("accuracy_adaptive_worst") is not None:
            non = (
                f"{pct(r['accuracy_nonadaptive'])} accuracy against the same attack ignoring the purifier, "
                if r.get("accuracy_nonadaptive") is not None
                else ""
            )
            cheaper = ", through a cheaper attack-time DIP" if r.get("attack_purifier_cheaper") else ""
            draws = int(r.get("eval_draws") or 1)
            rules = (
                f"{pct(r['accuracy_adaptive'])} against it on one purification, {pct(r['accuracy_adaptive_worst'])} on the worst of "
                f"{draws} draws, {pct(r.get('accuracy_adaptive_vote'))} by their majority"
                if draws > 1  # a deterministic purifier has one draw: one number
                else f"{pct(r['accuracy_adaptive'])} against it"
            )
            iterates = r.get("accuracy_adaptive_any_iterate")
            lines += [
                "",
                f"Adaptive attack on {r['defense']} ({r['attack']}, BPDA {r['bpda']}{cheaper}, EOT {r['eot']}; n = {r['n']} attacked fakes): "
                f"{non}{rules}" + (f", {pct(iterates)} counting every attack iterate." if iterates is not None else "."),
            ]
    board = [r for r in results.get("leaderboard", []) if r.get("robust_accuracy") is not None]
    if board:
        lines += [
            "",
            f"Defense leaderboard, robust accuracy at {_threat(results)} (every bounded attack, attacked fakes; n) / clean accuracy: "
            + "; ".join(
                f"{r['defense']} {pct(r['robust_accuracy'])} / {pct(r['clean_accuracy'])}"
                + (" (non-adaptive)" if r.get("nonadaptive_only") else "")
                + (f" (n = {r['n_robust']})" if r.get("n_robust") else "")
                + (" (collapsed: no robustness)" if r.get("collapsed") else " (near chance: no robustness)" if r.get("near_chance") else "")
                for r in board
            )
            + ".",
        ]
    for name, c in run.certify.items():
        by = {round(float(a["radius"]), 4): a for a in c["certified_accuracy"]}
        if 0.25 in by:
            lines += [
                "",
                f"Randomized smoothing ({name}, sigma {c['settings']['sigma']:g}, n = {c['n_images']} images, "
                f"{c['settings']['n']} samples): certified accuracy {pct(by[0.25]['accuracy'])} at L2 radius 0.25"
                + (f", {pct(by[0.5]['accuracy'])} at 0.5." if 0.5 in by else "."),
            ]
    total = sum(float(r.get("seconds") or 0) for r in run.stages)
    vers = run.stored.get("versions", {})
    cpus = sorted({r["host"]["cpus"] for r in run.stages if r.get("host")})  # the machine that ran the stages, not this one
    where = vers.get("gpu") or (f"{'/'.join(map(str, cpus))} CPU cores" if cpus else "CPU")
    lines += [
        "",
        f"Preset `{run.cfg['run'].get('preset')}`, seed {run.cfg['run']['seed']}, {total / 60:.1f} min of stage time on "
        f"{where} ({vers.get('platform', '?')}), torch {vers.get('torch', '?')}.",
    ]
    # names in these lines are the user's (cards, purifiers): no raw HTML reaches a README that copies this file
    return "\n".join(line.replace("<", "&lt;").replace(">", "&gt;") for line in lines) + "\n"


def _threat(results: dict[str, Any]) -> str:
    """The threat model in words (``Linf 0.02``)."""
    tm = results.get("threat_model") or {}
    return f"{str(tm.get('norm', 'linf')).replace('linf', 'Linf').replace('l2', 'L2')} {tm.get('eps', 0.02):g}"
