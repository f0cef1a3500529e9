"""The report of a run: the paper's tables and figures beside ours, from the run's own files.

``write_report(run_dir)`` reads what the stages wrote (model sidecars, attack folders, the DIP
study, the stage records) and writes ``RUN/report/``:

* ``report.html``: self-contained (figures embedded as data URIs), opens offline;
* ``report.md``: the same content, figures linked from ``figs/``;
* ``results.json``: every number shown, machine-readable;
* ``summary.md``: Table II and the DIP headline in a few lines (the README's table);
* ``figs/``: Figs 2-6 as PNG.

Missing parts (a stage not run yet) are reported as missing, never invented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfrobust.report import paper
from dfrobust.report.by_group import group_rows, group_table
from dfrobust.report.collected import CollectedRun
from dfrobust.report.document import RESULTS_SCHEMA_VERSION, Figure, Section, _html, _markdown
from dfrobust.report.run_folder import collect
from dfrobust.report.sections import RunResults, extra_sections
from dfrobust.report.differences import differences
from dfrobust.report.study_tables import (
    _paper_row,
    column_label,
    long_row_intervals,
    ordered_models,
    paper_table2,
    perturbation_rows,
    perturbation_table,
    ran_on,
    settings_table,
    stage_table,
    sweep_table,
    table1,
    Table2,
    table2,
    table2_columns,
    table3,
    table4,
)
from dfrobust.report.summary import summary_markdown
from dfrobust.report.tables import SUCCESS_DEFINITION, Table, interval, rate, with_intervals
from dfrobust.report.transfer import transfer_rows, transfer_table
from dfrobust.utils.io import write_json

# ---------------------------------------------------------------- collecting the run's files


# ---------------------------------------------------------------- tables


# ---------------------------------------------------------------- figures


#: The heading of the paper comparison; plug-in sections go right before it.
DIFFERENCES_TITLE = "Where this run differs from the paper"


def _fig2(run: CollectedRun, figs: Path) -> Figure | None:
    """Real, fake and perturbed samples, each with the detectors' P(real), from the samples stage."""
    from dfrobust.attacks.base import attack_display
    from dfrobust.report.figures import plot_fig2
    from dfrobust.utils.io import load_image

    samples = run.samples
    if samples is None or not samples.rows:
        return None
    models = samples.models
    labels = {r["name"]: r["label"] for r in run.roles}
    rows = []
    for row in samples.rows:
        label = (
            row["kind"]
            if row["kind"] != "perturbed"
            else f"{attack_display(row['attack'])} (from {labels.get(row['source'], row['source'])})"
        )
        cells = [(load_image(samples.dir / c["image"]), " / ".join(f"{c['p_real'][m]:.2f}" for m in models)) for c in row["cells"]]
        rows.append((label, cells))
    path = plot_fig2(rows, figs / "fig2.png")
    who = " / ".join(labels.get(m, m) for m in models)
    return Figure(path, f"Fig 2. Real, fake and perturbed test images; captions: P(real) by {who}.")


def _fig3(run: CollectedRun, long_rows: list[dict[str, Any]], figs: Path) -> Figure | None:
    from dfrobust.report.attack_figures import plot_fig3

    group = next((r["group"] for r in run.roles if r.get("sample_source")), "paper")
    paper_models = [r["name"] for r in run.roles if r["group"] == group]
    rows = [r for r in long_rows if r["model"] in paper_models]
    if not rows:
        return None
    who = " and ".join(r["label"] for r in run.roles if r["group"] == group)
    columns = [k for k in table2_columns({r["model"]: {f"{r['attack']}_{r['setting']}": 0} for r in rows})]
    theirs = {m: dict(zip(columns, paper_table2(_paper_row(run, m), columns))) for m in paper_models}
    return Figure(
        plot_fig3(rows, figs / "fig3.png", paper=theirs), f"Fig 3. Accuracy of the {who} on unperturbed and perturbed fake test images."
    )


def _fig4(run: CollectedRun, wide: dict[str, dict[str, float | None]], figs: Path) -> Figure | None:
    """Each average group (the paper: the Lipschitz ResNets) against the role its members start from."""
    from dfrobust.report.figures import plot_fig4

    for role in run.roles:
        group = role.get("average_group")
        if not group or f"{group} (average)" not in wide or role.get("start_from") not in wide:
            continue
        base = role["start_from"]
        columns = [c for c in next(iter(wide.values())) if c in wide[base]]
        series = (("unregularised", base), ("regularised (average)", f"{group} (average)"), ("regularised (best)", f"{group} (best)"))
        bars = {label: {column_label(c): wide[name].get(c) for c in columns} for label, name in series}
        theirs = {label: dict(zip(map(column_label, columns), paper_table2(_paper_row(run, name), columns))) for label, name in series}
        return Figure(
            plot_fig4(bars, figs / "fig4.png", paper=theirs),
            "Fig 4. Regularisation: the unregularised ResNet-18 vs the average and the best of the Lipschitz-regularised ones.",
        )
    return None


# ---------------------------------------------------------------- rendering


def build_sections(run: CollectedRun, figs: Path) -> tuple[list[Section], dict[str, Any]]:
    """The report's sections and the numbers behind them (for ``results.json``)."""
    results: dict[str, Any] = {"schema_version": RESULTS_SCHEMA_VERSION, "paper": paper.as_fractions()}
    sections = []
    s = Section("Detectors on unperturbed data")
    if run.models:
        t, rows = table1(run)
        s.items.append(t)
        results["table1"] = rows
    else:
        s.items.append("No trained model yet.")
    sections.append(s)

    s = Section("Adversarial attacks")
    # Table II once; the figures and the leaderboard below read it (None: no attack has finished)
    t2 = table2(run) if run.attack_rows else None
    if t2 is not None:
        long_rows, wide = t2.rows, t2.wide
        s.items.append(t2.table)
        results["table2"] = [long_row_intervals(r) for r in long_rows]
        results["table2_wide"] = wide
        # each cell's own n and Wilson interval, beside the wide table (same keys; the average and best rows have none)
        counts = t2.counts
        results["table2_wide_n"] = {m: {k: counts[m].get(k) for k in row} for m, row in wide.items() if m in counts}
        results["table2_wide_ci"] = {
            m: {k: interval(v, n[k]) for k, v in row.items()} for m, row in wide.items() if (n := results["table2_wide_n"].get(m))
        }
        results["transfer"] = transfer_rows(long_rows)
        if any(len({e["attack"] for e in r["transfers"]}) > 1 for r in results["transfer"]):
            s.items.append(transfer_table(results["transfer"], ordered_models(run, [r["model"] for r in results["transfer"]])))
        results["table2_groups"] = [long_row_intervals(r) for r in group_rows(run.attack_rows)]
        if results["table2_groups"]:
            s.items.append(
                group_table(results["table2_groups"], ordered_models(run, sorted({r["model"] for r in results["table2_groups"]})))
            )
        results["perturbations"] = perturbation_rows(run.attack_rows)
        s.items.append(perturbation_table(results["perturbations"]))
        for fig in (_fig2(run, figs), _fig3(run, long_rows, figs)):
            if fig:
                s.items.append(fig)
        sections.append(s)
        s = Section("Lipschitz regularisation")
        if any(r.get("average_group") for r in run.roles):  # the paper's Fig 4, only where the run trains such a group
            fig = _fig4(run, wide, figs)
            s.items.append(fig if fig else "Regularised models not attacked yet.")
    else:
        s.items.append("No attack results yet.")
    if s.items:
        sections.append(s)

    s = Section("Deep Image Prior defense")
    dip = run.dip
    if dip is not None:
        summ = dip.summary
        timing = summ.get("timing", {})
        s.items.append(
            f"Classifier: {dip.role.get('label', dip.role.get('model'))}. {summ.get('n_images', '?')} images; classification at iteration "
            f"{summ.get('classify_at', '?')} of {summ.get('iterations_run', '?')} run; "
            f"{timing.get('seconds_per_image', float('nan')):.1f} s per image amortised on {', '.join(timing.get('device', ['?']))} "
            f"(batches of {timing.get('batch_size', '?')}; the paper: ~30 min per image on a K80)."
        )
        if summ.get("notes"):
            s.items.append("Categories with fewer candidates than requested: " + "; ".join(summ["notes"]) + ".")
        s.items += [table3(dip), *table4(dip)]
        sw = sweep_table(dip)
        if sw:
            s.items.append(sw)
        from dfrobust.report.dip_figures import draw_dip_figures

        drawn = draw_dip_figures(dip.dir, figs)
        for name, caption in (
            ("fig5", "Fig 5. Images generated along the DIP optimisation for a perturbed (FGSM) fake."),
            ("fig6", "Fig 6. Classifier P(real) along the DIP optimisation: raw and window-averaged."),
        ):
            if name in drawn:
                s.items.append(Figure(drawn[name], caption))
        # accuracy on its n (the per-class rates' denominators are in Table IV); each category's and iteration's own n
        results["table3"] = [with_intervals(r, {"accuracy": r["n"]}) for r in dip.table3]
        results["table4"] = [with_intervals(r, {k: r["n"] for k in r if "@" in k}) for r in dip.table4]
        n_sweep = dip.summary.get("n_images")
        results["sweep"] = [with_intervals(r, {k: n_sweep for k in r if "@" in k}) for r in dip.sweep]
        results["dip_summary"] = summ
    else:
        s.items.append("The DIP study has not run yet.")
    sections.append(s)

    for s in (adaptive_section(run, results, figs), defense_section(run, t2, results, figs)):
        if s is not None:
            sections.append(s)

    diffs = differences(run)
    sections.append(Section(DIFFERENCES_TITLE, ["\n".join(f"- {d}" for d in diffs)]))
    sections.append(Section("How these numbers were made", [SUCCESS_DEFINITION, settings_table(run), stage_table(run.stages)]))
    results["differences"] = diffs
    results["data"] = run.manifest
    results["settings"] = {
        "config": run.cfg,
        "data_arg": run.stored.get("data_arg"),
        "device": run.stored.get("device"),
        "devices_resolved": ran_on(run.stages),  # what "auto" turned out to be, from the stage records
        "versions": run.stored.get("versions"),
        # the CPU instruction set the numbers were computed at ([run] pin_isa or DFROBUST_PIN_ISA; utils/numerics.py)
        "pinned_isa": run.cfg["run"].get("pin_isa") or (run.stored.get("versions") or {}).get("pinned_isa") or "none",
    }
    results["stages"] = [{k: r.get(k) for k in ("name", "state", "seconds")} for r in run.stages]
    return sections, results


def adaptive_section(run: CollectedRun, results: dict[str, Any], figs: Path) -> Section | None:
    """Beyond the paper: Table V (adaptive attacks on the purifiers), robustness curves, Square's queries, masking checks."""
    from dfrobust.report.adaptive import adaptive_reading, curves_table, plot_curves, plot_square, square_rows, table5, warnings_lines

    if not (run.adaptive or run.curves or run.attack_rows):
        return None
    s = Section("Beyond the paper: adaptive evaluation")
    if run.adaptive:
        dip_non, dip_n = None, None
        if run.dip is not None:
            wrong = next((r for r in run.dip.table4 if r["category"] == "perturbed/fake-wrong"), None)
            if wrong and int(wrong["n"]):
                thr = "0.25" if "dip@0.25" in wrong else "0.5"
                dip_non, dip_n = float(wrong[f"dip@{thr}"]), int(wrong["n"])
        t, rows = table5(run.adaptive, dip_non, dip_n)
        s.items += [adaptive_reading(rows), t]
        results["adaptive"] = rows
    if run.curves:
        results["robustness_curves"] = [
            {
                **{k: r[k] for k in ("model", "norm", "eps", "subset", "n", "accuracy", "ci_low", "ci_high")},
                "accuracy_ci": [r["ci_low"], r["ci_high"]],
            }
            for r in run.curves
        ]
        for norm in ("linf", "l2"):
            path = plot_curves(run.curves, norm, figs / f"curves-{norm}.png")
            if path:
                s.items.append(
                    Figure(
                        path,
                        f"Robustness curve ({norm}): accuracy on fake test images under APGD at each radius, with Wilson 95% intervals.",
                    )
                )
        s.items.append(curves_table(run.curves))
    warn = warnings_lines(run.curve_warnings)
    if warn:
        s.items += [
            "Signs of gradient masking (checks in the spirit of AutoAttack's; each is a reason to distrust a gradient "
            "attack's number for that model):",
            warn,
        ]
        results["masking_warnings"] = run.curve_warnings
    sq = square_rows(run.attack_rows)
    if sq:
        path = plot_square(sq, figs / "square.png")
        if path:
            s.items.append(
                Figure(
                    path,
                    "Square attack (score-based black-box: it queries the detector's scores only, no gradients): "
                    "share of fakes passed as real within a query budget"
                    + (
                        ", on the fakes the earlier attacks of its chain left correct (survivors; n = their number)."
                        if any(r.get("survivors_of") for r in run.attack_rows if r["attack"].startswith("square"))
                        else "."
                    ),
                )
            )
        results["square"] = {
            m: [{"queries": q, "success_rate": r, "n": n, "success_rate_ci": interval(r, n)} for q, r, n in pts] for m, pts in sq.items()
        }
    return s if len(s.items) else None


def defense_section(run: CollectedRun, t2: Table2 | None, results: dict[str, Any], figs: Path) -> Section | None:
    """Beyond the paper: the defense leaderboard, the trade-off figure and the certificates.

    ``t2``: Table II as :func:`build_sections` computed it (``None`` before any attack finished).
    """
    from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table, plot_tradeoff
    from dfrobust.report.verdicts import masking_by_target, minimal_rows, minimal_table, robust_by_target, threat_model_of

    if not run.models:
        return None
    s = Section("Beyond the paper: defense leaderboard")
    tm = threat_model_of(run.cfg)
    robust = robust_by_target(run)
    rows = leaderboard_rows(run, t2, robust, tm.record(), masking_by_target(run))
    results["threat_model"] = tm.record()
    results["robust_accuracy"] = {name: ra.record() for name, ra in robust.items()}
    results["leaderboard"] = rows
    minimal = minimal_rows(run)
    results["minimal_perturbation"] = minimal
    caveat = (
        "A defense is only as good as the strongest attack run against it; the DIP row is measured "
        "against attacks that did not know the purifier unless its adaptive column is filled."
    )
    if run.user_run:
        s.items.append(f"Your detectors, and the defenses this run put in front of them, on equal terms. {caveat}")
    else:
        s.items.append(
            "Every defended detector on equal terms: the paper's (Lipschitz regularisation, blur augmentation, DIP "
            "purification) and the field's (adversarial training, Gaussian-noise training with randomized-smoothing "
            f"certificates). {caveat}"
        )
    s.items.append(leaderboard_table(rows))
    if minimal:
        s.items.append(minimal_table(minimal, {r["name"]: r.get("label", r["name"]) for r in run.roles}))
    path = plot_tradeoff(rows, figs / "tradeoff.png")
    if path:
        s.items.append(
            Figure(path, "Trade-off: robust accuracy at the threat model vs clean accuracy per defense; marker area: training cost.")
        )
    if run.certify:
        t = Table(
            "Randomized-smoothing certificates (Cohen et al. 2019)",
            ["model", "sigma", "n", "n0 / n samples", "abstained", *(f"certified @ L2 {r:g}" for r in (0.0, 0.25, 0.5, 1.0))],
            note="Certified accuracy: the smoothed classifier is correct and certified at this L2 radius (pixels in [0, 1]); "
            "Clopper-Pearson bounds at the given alpha; [low–high]: Wilson 95% interval over images.",
        )
        for name, c in run.certify.items():
            by = {round(float(a["radius"]), 4): a for a in c["certified_accuracy"]}
            st = c["settings"]
            t.rows.append(
                [
                    name,
                    f"{st['sigma']:g}",
                    str(c["n_images"]),
                    f"{st['n0']} / {st['n']}",
                    str(c["abstained"]),
                    *(rate(by[r]["accuracy"], by[r]["n"]) if r in by else "–" for r in (0.0, 0.25, 0.5, 1.0)),
                ]
            )
        s.items.append(t)
        results["certify"] = run.certify
    return s


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report/{report.html, report.md, results.json, figs/}``; returns the report folder."""
    from dfrobust.utils.io import atomic_path

    run_dir = Path(run_dir)
    run = collect(run_dir)
    report_dir = run_dir / "report"
    figs = report_dir / "figs"
    figs.mkdir(parents=True, exist_ok=True)
    sections, results = build_sections(run, figs)
    for_sections = RunResults(run_dir, report_dir, figs, run.cfg, run.plan, results, collected=run)
    lead, lead_results = extra_sections(for_sections, first=True)  # the verdict: it opens the report
    extra, extra_results = extra_sections(for_sections, first=False)  # plug-in sections (a stage kind's), before the paper comparison
    at = next((i for i, s in enumerate(sections) if s.title == DIFFERENCES_TITLE), len(sections))
    sections[at:at] = extra
    if lead_results or extra_results:
        results["sections"] = {**lead_results, **extra_results}
    title = f"dfrobust report: {run_dir.name} (preset {run.cfg['run'].get('preset')})"
    if run.user_run:
        about = (
            'Your detectors red-teamed with the attacks and defenses of "Adversarial Perturbations Fool Deepfake Detectors" '
            "(Gandhi & Jain, IJCNN 2020) and those the field added since. Every number below comes from this run's files; "
            "the paper's own numbers appear only where its study applies (the DIP study), labelled as such."
        )
    else:
        about = (
            'Reproduction of "Adversarial Perturbations Fool Deepfake Detectors" (Gandhi & Jain, IJCNN 2020). '
            "Every number below comes from this run's files; numbers in parentheses are the paper's own, "
            "labelled as such."
        )
    intro = Section("About", [about])
    sections = [*lead, intro, *sections]
    with atomic_path(report_dir / "report.md") as tmp:
        tmp.write_text(_markdown(title, sections, report_dir), encoding="utf-8")
    with atomic_path(report_dir / "report.html") as tmp:
        tmp.write_text(_html(title, sections), encoding="utf-8")
    write_json(report_dir / "results.json", results)
    with atomic_path(report_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(run, results), encoding="utf-8")
    return report_dir
