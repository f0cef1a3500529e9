"""The report's tables: Tables I-IV, the settings, the stages (how the run differs from the paper: :mod:`.differences`)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import Any

from dfrobust.report import paper
from dfrobust.report.collected import CollectedRun, DipStudy
from dfrobust.report.tables import Table, paper_pct, pct, rate, with_intervals

#: Attacks of the paper (Table II's columns), and the momentum transfer attacks the summary shows as one line.
METRIC_KEYS = ("accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall")


METRIC_LABELS = ("accuracy", "AUROC", "fake precision", "fake recall", "real precision", "real recall")


def _both(ours: Any, theirs: float | None, n: Any = None) -> str:
    """Our rate (with its interval when ``n`` is given) and the paper's in parentheses."""
    mine = rate(ours, n) if n is not None else pct(ours)
    return f"{mine} ({paper_pct(theirs)})" if theirs is not None else mine


def own_n(n: int | None, row_n: int | None) -> str:
    """`` (n=10)`` after a cell whose interval is on another number of images than its row's n column; else nothing."""
    return f" (n={n})" if n is not None and row_n is not None and n != row_n else ""


def ordered_models(run: CollectedRun, present: list[str]) -> list[str]:
    """``present`` model names in the roles' order, with each average group's average and best rows after its members.

    Names without a role (a model the plan does not know) come last.
    """
    out: list[str] = []
    roles = [r for r in run.roles if r["name"] in present]
    for i, role in enumerate(roles):
        out.append(role["name"])
        group = role.get("average_group")
        nxt = roles[i + 1].get("average_group") if i + 1 < len(roles) else None
        if group and nxt != group:
            out += [f"{group} (average)", f"{group} (best)"]
    return out + [n for n in present if n not in out]


def _average_members(run: CollectedRun, name: str) -> list[str]:
    group = name.rsplit(" (", 1)[0]
    return [r["name"] for r in run.roles if r.get("average_group") == group]


def _paper_row(run: CollectedRun, name: str) -> str | None:
    """The key of ``name``'s row in the paper's tables (its role's ``paper_row``; average rows by group)."""
    role = run.role(name)
    if role is not None:
        return role.get("paper_row")
    return name if name.endswith((" (average)", " (best)")) else None


def table1(run: CollectedRun) -> tuple[Table, list[dict[str, Any]]]:
    """Table I: clean test metrics per model (ours, the paper's in parentheses)."""
    avg = paper.TABLE1.get("resnet18-lip (average)")
    lam = [paper.TABLE1[k] for k in paper.TABLE1 if k.startswith("resnet18-lip") and k != "resnet18-lip (average)"]
    footnote = ""
    shown = ordered_models(run, list(run.models))
    if avg and lam and any(_paper_row(run, n) == "resnet18-lip (average)" for n in shown):  # only beside the paper's average row
        means = [mean(r[i] for r in lam) for i in range(2)]
        footnote = (
            f" The paper's own average row ({avg[0]:.1f}% accuracy, {avg[1]:.1f}% AUROC) is not the mean of its four "
            f"lambda rows ({means[0]:.1f}%, {means[1]:.1f}%); it is printed as published."
        )
    t = Table(
        "Table I. Unperturbed test data",
        ["model", "n", *METRIC_LABELS, "mean input-gradient norm"],
        note=("In parentheses: the paper's numbers (1,250 test images per class). " if any(_paper_row(run, n) for n in shown) else "")
        + "Metrics on the whole test split (both classes); [low–high]: Wilson 95% interval on each rate's own denominator."
        + footnote,
    )
    out = []
    models = run.models
    for name in ordered_models(run, list(models)):
        if name.endswith(" (best)"):
            continue  # the paper's Table I has an average row only
        if name.endswith(" (average)"):
            tests = [models[n]["metrics"]["test"] for n in _average_members(run, name) if n in models]
            m = {k: _mean_of(tests, k) for k in (*METRIC_KEYS, "input_grad_norm")}
        else:
            m = models[name]["metrics"]["test"]
        key = _paper_row(run, name)
        theirs = paper.TABLE1.get(key) if key else None
        rows = [(name, m, theirs, {})]
        # one row per generator when the user's data has one folder per generator (no paper numbers for those)
        groups = (models.get(name) or {}).get("metrics", {}).get("test_groups") or {}
        rows += [(f"{name} / {group}", gm, None, {"detector": name, "group": group}) for group, gm in groups.items()]
        for label, metrics, paper_row, extra in rows:
            counts = _class_counts(metrics)
            cells = [_both(metrics.get(k), paper_row[i] if paper_row else None, counts.get(k)) for i, k in enumerate(METRIC_KEYS)]
            g = metrics.get("input_grad_norm")
            t.rows.append([label, str(metrics.get("n", "–")), *cells, f"{g:.3g}" if g is not None else "–"])
            row = {
                "model": label,
                **extra,
                "n": metrics.get("n"),
                **{k: metrics.get(k) for k in (*METRIC_KEYS, "input_grad_norm")},
                # the paper's numbers as fractions, as every rate of results.json
                "paper": {k: paper.fraction(v) for k, v in zip(paper.TABLE1_COLUMNS, paper_row)} if paper_row else None,
            }
            # each rate's own denominator (AUROC is no proportion; an average row has no counts: null)
            out.append(with_intervals(row, {k: counts.get(k) for k in METRIC_KEYS if k != "auroc"}))
    if any(r.get("group") for r in out):
        t.note += " Rows NAME / GROUP: the same detector on the test images of one generator folder."
    return t, out


def table2_columns(wide: dict[str, dict[str, Any]]) -> list[str]:
    """``unperturbed``, then every attack's columns present, FGSM and CW first, blackbox before whitebox."""
    from dfrobust.report.attack_figures import column_order

    cols = {k for row in wide.values() for k in row if k not in ("model", "unperturbed")}
    return ["unperturbed", *sorted(cols, key=column_order)]


def column_label(column: str) -> str:
    """``fgsm_blackbox`` -> ``FGSM blackbox``; ``unperturbed`` stays."""
    from dfrobust.report.attack_figures import series_label

    return "unperturbed" if column == "unperturbed" else series_label(column)


def survivors_label(column: str, chained: dict[str, str]) -> str:
    """:func:`column_label`, plus ``on survivors of APGD-CE-Linf`` for a survivors-only attack's column (``chained``:
    attack label -> the ``survivors_of`` of its rows): its rate is on the images the earlier attacks left correct."""
    from dfrobust.attacks.base import attack_display

    earlier = chained.get(column.split("_", 1)[0])
    label = column_label(column)
    return f"{label} on survivors of {' + '.join(attack_display(a) for a in earlier.split('+'))}" if earlier else label


def chained_attacks(long_rows: list[dict[str, Any]]) -> dict[str, str]:
    """Attack label -> ``survivors_of`` for the survivors-only attacks among Table II's long rows."""
    return {str(r["attack"]): str(r["survivors_of"]) for r in long_rows if r.get("survivors_of")}


def paper_table2(name: str | None, columns: list[str]) -> list[float | None]:
    """The paper's Table II values of row ``name`` under our column keys (``None`` where it has none)."""
    if name is None:
        return [None] * len(columns)
    if name in paper.TABLE2_BEST:
        theirs = dict(paper.TABLE2_BEST[name])
    else:
        theirs = dict(zip(paper.TABLE2_COLUMNS, paper.TABLE2.get(name, ())))
    return [theirs.get("clean" if c == "unperturbed" else c.replace("_", "-")) for c in columns]


def long_row_intervals(row: dict[str, Any]) -> dict[str, Any]:
    """A Table II long row (``table2_rows``) with each rate's n and Wilson interval (results.json)."""
    n = row.get("n")
    return with_intervals(
        row, {"clean_accuracy": n, "perturbed_accuracy": n, "success_rate_on_correct": row.get("n_correct"), "jpeg_accuracy": n}
    )


def table2_paper_rows(run: CollectedRun, long_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The long rows Table II shows: transfers a role adds beyond the paper's (its ``transfer_to``) go to the transfer table."""
    extra = {(r["name"], t) for r in run.roles for t in r.get("transfer_to") or ()}
    return [r for r in long_rows if not (r["setting"] == "blackbox" and (r["source"], r["model"]) in extra)]


@dataclass(frozen=True)
class Table2:
    """Table II, computed once from the attack rows; Fig 3, Fig 4, the transfer table and the leaderboard read it.

    Attributes:
        table: the report's table.
        rows: one row per model, attack and setting (``results.json``'s ``table2``; its n per cell).
        wide: per model shown, in the table's order, each column's accuracy (``results.json``'s ``table2_wide``).
        counts: per model, the n behind each of its cells in ``wide`` (``results.json``'s ``table2_wide_n``): from
            Table II's own rows, whose column names a role's extra transfers (in ``rows``, not in the table) do not change.
    """

    table: Table
    rows: list[dict[str, Any]]
    wide: dict[str, dict[str, float | None]]
    counts: dict[str, dict[str, int]]


def table2(run: CollectedRun) -> Table2:
    """Table II: accuracy on fake test images, clean and perturbed, per model, attack and setting."""
    from dfrobust.studies.attack_tables import table2_counts, table2_rows, table2_wide

    long_rows = table2_rows(run.attack_rows) if run.attack_rows else []
    ensembles = {a["source"] for a in run.plan["attacks"] if a.get("members")}
    paper_rows = table2_paper_rows(run, long_rows)
    # an ensemble's whitebox row describes the surrogate, not a detector of the study: no row of its own
    wide = {r["model"]: r for r in table2_wide(paper_rows) if r["model"] not in ensembles}
    columns = table2_columns(wide)
    names = ordered_models(run, list(wide))
    counts = table2_counts(paper_rows)  # attacked fakes per model and column (an attack may run on fewer)
    for name in names:
        if name.endswith((" (average)", " (best)")):
            members = [wide[n] for n in _average_members(run, name) if n in wide]
            if name.endswith(" (average)"):
                wide[name] = {k: _mean_of(members, k) for k in columns}
            else:
                wide[name] = {k: max((float(m[k]) for m in members if k in m), default=None) for k in columns}
    theirs_shown = any(_paper_row(run, n) for n in names)  # the paper's rows (and its captions) only where the run has them
    averages = any(n.endswith(" (average)") for n in names)
    chained = chained_attacks(long_rows)
    t = Table(
        "Table II. Accuracy on fake test images, unperturbed and perturbed",
        ["model", "n", *(survivors_label(c, chained) for c in columns)],
        note=("In parentheses: the paper's numbers. " if theirs_shown else "")
        + "A cell attacked on another number of images than its row's n says so (n=...); its interval is on its own n. "
        + "Perturbed: the detector re-evaluated on the stored 8-bit PNGs (the one success definition, see 'How these numbers "
        + "were made'). n: attacked fake images; [low–high]: Wilson 95% interval"
        + (" (the average and best rows summarise their members and carry none)" if averages else "")
        + ". Blackbox: evaluated on images crafted on the role each model transfers from"
        + (" (the paper: the VGG-16 for every ResNet, the ResNet-18 for the VGG-16)" if theirs_shown else "")
        + "."
        + (
            " On survivors (AutoAttack's chain): the attack ran only on the fakes the earlier attacks left correct; its cell "
            "is its accuracy on those, n = their number (a fake they had fooled counts as fooled in robust accuracy)."
            if chained
            else ""
        )
        + (" Best: the best member per column, as the paper's starred cells." if averages else "")
        + (
            " From ensemble (beyond the paper): crafted on the averaged logits of the other detectors of the model's transfer group."
            if ensembles
            else ""
        ),
    )
    # too wide for a page: the paper's columns in one part, the attacks beyond the paper in the next
    ours = {"unperturbed", *(c.replace("-", "_") for c in paper.TABLE2_COLUMNS)}
    t.keys = 2
    t.groups = [
        ("the paper's attacks", [survivors_label(c, chained) for c in columns if c in ours]),
        ("beyond the paper", [survivors_label(c, chained) for c in columns if c not in ours]),
    ]
    for name in names:
        theirs = paper_table2(_paper_row(run, name), columns)
        n = counts.get(name, {})  # the average and best rows have none: no interval rather than a borrowed n
        t.rows.append(
            [
                name,
                str(n["unperturbed"]) if n else "–",
                *(_both(wide[name].get(k), theirs[i], n.get(k)) + own_n(n.get(k), n.get("unperturbed")) for i, k in enumerate(columns)),
            ]
        )
    return Table2(t, long_rows, {n: {k: wide[n].get(k) for k in columns} for n in names}, counts)


PERTURBATION_KEYS = ("l2", "linf", "psnr", "ssim")


def perturbation_rows(attack_rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Size of the stored adversarial images per attack and source: mean and median L2, Linf, PSNR, SSIM."""
    from statistics import median

    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in attack_rows:
        if r["setting"] == "whitebox":  # one row per crafted image
            groups.setdefault((r["attack"], r["source"]), []).append(r)
    out = []
    for (attack, source), rows in groups.items():
        row: dict[str, Any] = {"attack": attack, "source": source, "n": len(rows)}
        for k in PERTURBATION_KEYS:
            vals = [
                float(r[k]) for r in rows if r.get(k) not in (None, "") and float(r[k]) == float(r[k]) and abs(float(r[k])) != float("inf")
            ]
            row[f"mean_{k}"] = mean(vals) if vals else None
            row[f"median_{k}"] = median(vals) if vals else None
        out.append(row)
    return out


def perturbation_table(rows: list[dict[str, Any]]) -> Table:
    """How visible the perturbations are: the sizes of the stored 8-bit adversarial images."""
    t = Table(
        "Perturbation size of the stored adversarial images",
        ["attack", "crafted on", "n", "L2 mean / median", "Linf mean / median", "PSNR dB mean / median", "SSIM mean / median"],
        note="Measured on the 8-bit PNGs the attacks stored, against the clean test image (pixels in [0, 1]); "
        "identical images (PSNR infinite) are left out of the PSNR column.",
    )
    for r in rows:
        cells = []
        for k, fmt in zip(PERTURBATION_KEYS, ("{:.3f}", "{:.4f}", "{:.1f}", "{:.3f}")):
            a, b = r[f"mean_{k}"], r[f"median_{k}"]
            cells.append("–" if a is None else f"{fmt.format(a)} / {fmt.format(b)}")
        t.rows.append([r["attack"], r["source"], str(r["n"]), *cells])
    return t


def table3(dip: DipStudy) -> Table:
    """Table III: the DIP defense overall, per method and threshold, beside the paper's."""
    t = Table(
        "Table III. DIP defense results overall",
        ["method", "threshold", "n", *METRIC_LABELS],
        note="In parentheses: the paper's numbers (its 100-image subsample). baseline = the undefended classifier; "
        "dip = output at iteration T; dip-window = P(real) averaged over the window around T; "
        "dip-es = output at each image's ES-WMV stopping point (dip.early_stop); jpeg/blur = cheap transforms. "
        "[low–high]: Wilson 95% interval on accuracy (per-class counts are in Table IV).",
    )
    for r in dip.table3:
        thr = float(r["threshold"])
        key = "baseline" if r["method"] == "baseline" and thr == 0.5 else f"dip@{thr:.2f}" if r["method"] == "dip" else None
        theirs = paper.TABLE3.get(key) if key else None
        t.rows.append(
            [
                r["method"],
                f"{thr:g}",
                r["n"],
                *(_both(r[k], theirs[i] if theirs else None, r["n"] if k == "accuracy" else None) for i, k in enumerate(METRIC_KEYS)),
            ]
        )
    return t


def table4(dip: DipStudy) -> list[Table]:
    """Table IV: accuracy per category of the DIP study, one table per threshold (methods as columns)."""
    rows = dip.table4
    cols = [c for c in rows[0] if "@" in c] if rows else []
    thresholds = list(dict.fromkeys(c.split("@")[1] for c in cols))
    requested = rows[0].get("requested", "") if rows else ""
    tables = []
    for thr in thresholds:
        methods = [c for c in cols if c.endswith(f"@{thr}")]
        t = Table(
            f"Table IV. DIP defense results by category, threshold {thr}",
            ["category", "n", *(m.split("@")[0] for m in methods)],
            note="[low–high]: Wilson 95% interval. The paper's text: 95% on perturbed Fake-Wrong and 98% elsewhere at threshold "
            f"0.25; its FGSM whitebox Fake-Wrong category fell from 100% (0.5) to 80% (0.25). Images requested per category: {requested}.",
        )
        for r in rows:
            t.rows.append([r["category"], r["n"], *(rate(r[m], r["n"]) for m in methods)])
        tables.append(t)
    return tables


def sweep_table(dip: DipStudy) -> Table | None:
    """Accuracy per classification iteration T (the paper chose 6,000 from 2,500..7,500)."""
    rows = dip.sweep
    if not rows:
        return None
    cols = [c for c in rows[0] if "@" in c]
    n = dip.summary.get("n_images")
    t = Table(
        "Choice of T: accuracy per classification iteration",
        ["iteration", *cols],
        note=f"n = {n} images at every iteration; [low–high]: Wilson 95% interval. T is chosen on the study's own images.",
    )
    for r in rows:
        t.rows.append([r["iteration"], *(rate(r[c], n) for c in cols)])
    return t


def settings_table(run: CollectedRun) -> Table:
    """What made these numbers: preset, overrides, seed, data, device, versions."""
    cfg, stored = run.cfg, run.stored
    man = run.manifest or {}
    data_hash = man.get("manifest_hash") or "–"
    made = man.get("created_by", {})
    counts = man.get("counts", {})
    if man.get("in_place"):  # the user's folder or list, read where it is
        where = f" (read in place: {man.get('layout')})"
        size = "; ".join(f"{split} " + ", ".join(f"{n} {c}" for c, n in per.items()) for split, per in counts.items())
        size += f"; {len(man['groups'])} generator(s): {', '.join(man['groups'])}" if man.get("groups") else ""
    else:
        where = f" (made by: {made.get('command', '?')})" if made else ""
        px = man.get("image_size")
        size = (
            "; ".join(
                ([f"{px[0]}x{px[1]} px"] if isinstance(px, (list, tuple)) and len(px) == 2 else [f"{px} px"] if px else [])
                + [f"{split} {_counts_text(counts.get(split))}" for split in ("train", "test") if counts.get(split) is not None]
            )
            if man
            else "–"
        )
    rows = [
        ["preset", str(cfg["run"].get("preset"))],
        ["overrides", " ".join(cfg["run"].get("overrides", [])) or "none"],
        ["seed", str(cfg["run"]["seed"])],
        ["data", str(stored.get("data_arg") or "built-in synthetic faces") + where],
        ["data size", size],
        ["data fingerprint" if man.get("in_place") else "data manifest hash", data_hash],
        ["device", device_text(stored.get("device"), run.stages)],
    ]
    rows += [[f"version: {k}", str(v)] for k, v in sorted(stored.get("versions", {}).items())]
    return Table("Settings of this run", ["setting", "value"], rows)


def _counts_text(counts: Any) -> str:
    """``{"fake": 24, "real": 24}`` -> ``24 fake, 24 real`` (a plain count stays a count)."""
    if isinstance(counts, dict):
        return ", ".join(f"{n} {c}" for c, n in counts.items())
    return f"{counts} images"


def ran_on(stages: list[dict[str, Any]]) -> list[str]:
    """The devices the stages ran on, as their records say (``auto`` resolved where the record has it)."""
    out: list[str] = []
    for rec in stages:
        dev = (rec.get("host") or {}).get("device")
        if dev and dev != "auto" and dev not in out:
            out.append(str(dev))
    return out


def device_text(asked: Any, stages: list[dict[str, Any]]) -> str:
    """``auto (resolved: cpu)``: the device asked for and what the stages ran on."""
    devices = ran_on(stages)
    if str(asked) == "auto":
        return f"auto (resolved: {', '.join(devices)})" if devices else "auto (not resolved in the stage records of this run)"
    return str(asked) if not devices or devices == [str(asked)] else f"{asked} (ran on: {', '.join(devices)})"


def stage_table(stages: list[dict[str, Any]]) -> Table:
    """Wall time per planned stage and where it ran, from the stage records."""
    t = Table("Wall time per stage", ["stage", "state", "seconds", "ran on"])
    total = 0.0
    for rec in stages:
        secs = float(rec.get("seconds") or 0.0)
        total += secs
        host = rec.get("host") or {}
        where = f"{host.get('device', '?')}, {host.get('cpus', '?')} CPUs" if host else "–"
        t.rows.append([rec["name"], rec.get("state", "?"), f"{secs:.1f}", where])
    t.rows.append(["total", "", f"{total:.1f}", ""])
    return t


def _class_counts(m: dict[str, Any]) -> dict[str, int | None]:
    """The denominators of each Table I rate, from the confusion matrix (``confusion[true][pred]``)."""
    c = m.get("confusion")
    if not c:
        return {k: None for k in METRIC_KEYS}
    return {
        "accuracy": m.get("n"),
        "auroc": None,
        "fake_precision": c[0][0] + c[1][0],
        "fake_recall": c[0][0] + c[0][1],
        "real_precision": c[0][1] + c[1][1],
        "real_recall": c[1][0] + c[1][1],
    }


def _mean_of(dicts: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(d[key]) for d in dicts if d.get(key) not in (None, "")]
    return mean(vals) if vals else None
