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

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from dfrobust.report import paper
from dfrobust.report.by_group import group_rows, group_table
from dfrobust.report.tables import Table, md_escape, paper_pct, pct, rate
from dfrobust.report.transfer import attack_label, transfer_rows, transfer_table
from dfrobust.utils.io import read_csv, read_json, write_json
from dfrobust.utils.runfolder import CONFIG_FILE, read_plan, resolve, stage_records

#: Attacks of the paper (Table II's columns), and the momentum transfer attacks the summary shows as one line.
METRIC_KEYS = ("accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall")
METRIC_LABELS = ("accuracy", "AUROC", "fake precision", "fake recall", "real precision", "real recall")


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables and figures, in order."""

    title: str
    items: list[Any] = field(default_factory=list)  # str (paragraph), Table, or Figure


@dataclass
class Figure:
    """A PNG in ``report/figs`` with its caption."""

    path: Path
    caption: str


def _both(ours: Any, theirs: float | None, n: Any = None) -> str:
    """Our rate (with its interval when ``n`` is given) and the paper's in parentheses."""
    mine = rate(ours, n) if n is not None else pct(ours)
    return f"{mine} ({paper_pct(theirs)})" if theirs is not None else mine


def _class_counts(m: dict[str, Any]) -> dict[str, int | None]:
    """The denominators of each Table I rate, from the confusion matrix (``confusion[true][pred]``)."""
    c = m.get("confusion")
    if not c:
        return {k: None for k in METRIC_KEYS}
    return {"accuracy": m.get("n"), "auroc": None,
            "fake_precision": c[0][0] + c[1][0], "fake_recall": c[0][0] + c[0][1],
            "real_precision": c[0][1] + c[1][1], "real_recall": c[1][0] + c[1][1]}


def _mean_of(dicts: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(d[key]) for d in dicts if d.get(key) not in (None, "")]
    return mean(vals) if vals else None


# ---------------------------------------------------------------- collecting the run's files


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, read from the run folder's ``plan.json`` and stage outputs."""
    plan = read_plan(run_dir)
    stored = read_json(run_dir / CONFIG_FILE)
    cfg = stored["config"]
    ctx: dict[str, Any] = {"run_dir": run_dir, "stored": stored, "cfg": cfg, "plan": plan, "roles": plan["roles"]}
    ctx["stages"] = stage_records(run_dir, [s["name"] for s in plan["stages"]])
    ctx["manifest"] = plan.get("data") or None
    ctx["models"] = {}
    for role in plan["roles"]:
        side = resolve(run_dir, role.get("sidecar") or str(Path(role["model"]).with_suffix(".json")))
        if side.is_file():
            ctx["models"][role["name"]] = read_json(side)
    rows: list[dict[str, str]] = []
    ctx["attack_dirs"] = {}
    for a in plan["attacks"]:
        folder = resolve(run_dir, a["dir"])
        if (folder / "results.csv").is_file():
            ctx["attack_dirs"][(a["attack"], a["source"])] = folder
            rows += read_csv(folder / "results.csv")
    ctx["attack_rows"] = rows
    ctx["samples"] = None
    samples = resolve(run_dir, plan["samples"]) if plan.get("samples") else None
    if samples is not None and (samples / "samples.json").is_file():
        ctx["samples"] = {"dir": samples, **read_json(samples / "samples.json")}
    ctx["certify"] = {}
    for name, folder in (plan.get("certify") or {}).items():
        summary = resolve(run_dir, folder) / "summary.json"
        if summary.is_file():
            ctx["certify"][name] = read_json(summary)
    from dfrobust.report.adaptive import read_adaptive, read_curves

    ctx["adaptive"] = read_adaptive({k: resolve(run_dir, v) for k, v in (plan.get("adaptive") or {}).items()})
    ctx["curves"], ctx["curve_warnings"] = read_curves({k: resolve(run_dir, v) for k, v in (plan.get("curves") or {}).items()})
    ctx["dip"] = None
    dip_dir = resolve(run_dir, plan["dip"]["dir"]) if plan.get("dip") else None
    if dip_dir is not None and (dip_dir / "summary.json").is_file():
        ctx["dip"] = {
            "dir": dip_dir,
            "role": plan["dip"],
            "summary": read_json(dip_dir / "summary.json"),
            "table3": read_csv(dip_dir / "table3.csv"),
            "table4": read_csv(dip_dir / "table4.csv"),
            "sweep": read_csv(dip_dir / "sweep.csv") if (dip_dir / "sweep.csv").is_file() else [],
        }
    return ctx


def ordered_models(ctx: dict[str, Any], present: list[str]) -> list[str]:
    """``present`` model names in the roles' order, with each average group's average and best rows after its members.

    Names without a role (a model the plan does not know) come last.
    """
    out: list[str] = []
    roles = [r for r in ctx["roles"] if r["name"] in present]
    for i, role in enumerate(roles):
        out.append(role["name"])
        group = role.get("average_group")
        nxt = roles[i + 1].get("average_group") if i + 1 < len(roles) else None
        if group and nxt != group:
            out += [f"{group} (average)", f"{group} (best)"]
    return out + [n for n in present if n not in out]


def _average_members(ctx: dict[str, Any], name: str) -> list[str]:
    group = name.rsplit(" (", 1)[0]
    return [r["name"] for r in ctx["roles"] if r.get("average_group") == group]


def _paper_row(ctx: dict[str, Any], name: str) -> str | None:
    """The key of ``name``'s row in the paper's tables (its role's ``paper_row``; average rows by group)."""
    role = next((r for r in ctx["roles"] if r["name"] == name), None)
    if role is not None:
        return role.get("paper_row")
    return name if name.endswith((" (average)", " (best)")) else None


# ---------------------------------------------------------------- tables


def table1(ctx: dict[str, Any]) -> tuple[Table, list[dict[str, Any]]]:
    """Table I: clean test metrics per model (ours, the paper's in parentheses)."""
    avg = paper.TABLE1.get("resnet18-lip (average)")
    lam = [paper.TABLE1[k] for k in paper.TABLE1 if k.startswith("resnet18-lip") and k != "resnet18-lip (average)"]
    footnote = ""
    if avg and lam:
        means = [mean(r[i] for r in lam) for i in range(2)]
        footnote = (f" The paper's own average row ({avg[0]:.1f}% accuracy, {avg[1]:.1f}% AUROC) is not the mean of its four "
                    f"lambda rows ({means[0]:.1f}%, {means[1]:.1f}%); it is printed as published.")
    t = Table("Table I. Unperturbed test data", ["model", "n", *METRIC_LABELS, "mean input-gradient norm"],
              note="In parentheses: the paper's numbers (1,250 test images per class). Metrics on the whole test split (both "
                   "classes); [low–high]: Wilson 95% interval on each rate's own denominator." + footnote)
    out = []
    models = ctx["models"]
    for name in ordered_models(ctx, list(models)):
        if name.endswith(" (best)"):
            continue  # the paper's Table I has an average row only
        if name.endswith(" (average)"):
            tests = [models[n]["metrics"]["test"] for n in _average_members(ctx, name) if n in models]
            m = {k: _mean_of(tests, k) for k in (*METRIC_KEYS, "input_grad_norm")}
        else:
            m = models[name]["metrics"]["test"]
        key = _paper_row(ctx, name)
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
            out.append({"model": label, **extra, "n": metrics.get("n"), **{k: metrics.get(k) for k in (*METRIC_KEYS, "input_grad_norm")},
                        "paper": dict(zip(paper.TABLE1_COLUMNS, paper_row)) if paper_row else None})
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


def paper_table2(name: str | None, columns: list[str]) -> list[float | None]:
    """The paper's Table II values of row ``name`` under our column keys (``None`` where it has none)."""
    if name is None:
        return [None] * len(columns)
    if name in paper.TABLE2_BEST:
        theirs = dict(paper.TABLE2_BEST[name])
    else:
        theirs = dict(zip(paper.TABLE2_COLUMNS, paper.TABLE2.get(name, ())))
    return [theirs.get("clean" if c == "unperturbed" else c.replace("_", "-")) for c in columns]


def table2(ctx: dict[str, Any]) -> tuple[Table, list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Table II: accuracy on fake test images, clean and perturbed, per model, attack and setting."""
    from dfrobust.studies.attack_tables import table2_counts, table2_rows, table2_wide

    long_rows = table2_rows(ctx["attack_rows"]) if ctx["attack_rows"] else []
    ensembles = {a["source"] for a in ctx["plan"]["attacks"] if a.get("members")}
    # an ensemble's whitebox row describes the surrogate, not a detector of the study: no row of its own
    wide = {r["model"]: r for r in table2_wide(long_rows) if r["model"] not in ensembles}
    columns = table2_columns(wide)
    names = ordered_models(ctx, list(wide))
    counts = table2_counts(long_rows)  # attacked fakes per model and column (an attack may run on fewer)
    for name in names:
        if name.endswith((" (average)", " (best)")):
            members = [wide[n] for n in _average_members(ctx, name) if n in wide]
            if name.endswith(" (average)"):
                wide[name] = {k: _mean_of(members, k) for k in columns}
            else:
                wide[name] = {k: max((float(m[k]) for m in members if k in m), default=None) for k in columns}
    t = Table("Table II. Accuracy on fake test images, unperturbed and perturbed", ["model", "n", *map(column_label, columns)],
              note="In parentheses: the paper's numbers. n: attacked fake images; [low–high]: Wilson 95% interval "
                   "(the average and best rows summarise their members and carry none). Blackbox: evaluated on images crafted on the role each model "
                   "transfers from (the paper: the VGG-16 for every ResNet, the ResNet-18 for the VGG-16). "
                   "Best: the best member per column, as the paper's starred cells."
                   + (" From ensemble (beyond the paper): crafted on the averaged logits of the other detectors of the "
                      "model's transfer group." if ensembles else ""))
    for name in names:
        theirs = paper_table2(_paper_row(ctx, name), columns)
        n = counts.get(name, {})
        t.rows.append([name, str(n["unperturbed"]) if n else "–",
                       *(_both(wide[name].get(k), theirs[i], n.get(k, n.get("unperturbed"))) for i, k in enumerate(columns))])
    return t, long_rows, {n: {k: wide[n].get(k) for k in columns} for n in names}


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
            vals = [float(r[k]) for r in rows if r.get(k) not in (None, "") and float(r[k]) == float(r[k]) and abs(float(r[k])) != float("inf")]
            row[f"mean_{k}"] = mean(vals) if vals else None
            row[f"median_{k}"] = median(vals) if vals else None
        out.append(row)
    return out


def perturbation_table(rows: list[dict[str, Any]]) -> Table:
    """How visible the perturbations are: the sizes of the stored 8-bit adversarial images."""
    t = Table("Perturbation size of the stored adversarial images", ["attack", "crafted on", "n", "L2 mean / median",
              "Linf mean / median", "PSNR dB mean / median", "SSIM mean / median"],
              note="Measured on the 8-bit PNGs the attacks stored, against the clean test image (pixels in [0, 1]); "
                   "identical images (PSNR infinite) are left out of the PSNR column.")
    for r in rows:
        cells = []
        for k, fmt in zip(PERTURBATION_KEYS, ("{:.3f}", "{:.4f}", "{:.1f}", "{:.3f}")):
            a, b = r[f"mean_{k}"], r[f"median_{k}"]
            cells.append("–" if a is None else f"{fmt.format(a)} / {fmt.format(b)}")
        t.rows.append([r["attack"], r["source"], str(r["n"]), *cells])
    return t


def table3(ctx: dict[str, Any]) -> Table:
    """Table III: the DIP defense overall, per method and threshold, beside the paper's."""
    t = Table("Table III. DIP defense results overall", ["method", "threshold", "n", *METRIC_LABELS],
              note="In parentheses: the paper's numbers (its 100-image subsample). baseline = the undefended classifier; "
                   "dip = output at iteration T; dip-window = P(real) averaged over the window around T; jpeg/blur = cheap transforms. "
                   "[low–high]: Wilson 95% interval on accuracy (per-class counts are in Table IV).")
    for r in ctx["dip"]["table3"]:
        thr = float(r["threshold"])
        key = "baseline" if r["method"] == "baseline" and thr == 0.5 else f"dip@{thr:.2f}" if r["method"] == "dip" else None
        theirs = paper.TABLE3.get(key) if key else None
        t.rows.append([r["method"], f"{thr:g}", r["n"], *(_both(r[k], theirs[i] if theirs else None, r["n"] if k == "accuracy" else None)
                                                         for i, k in enumerate(METRIC_KEYS))])
    return t


def table4(ctx: dict[str, Any]) -> list[Table]:
    """Table IV: accuracy per category of the DIP study, one table per threshold (methods as columns)."""
    rows = ctx["dip"]["table4"]
    cols = [c for c in rows[0] if "@" in c] if rows else []
    thresholds = list(dict.fromkeys(c.split("@")[1] for c in cols))
    requested = rows[0].get("requested", "") if rows else ""
    tables = []
    for thr in thresholds:
        methods = [c for c in cols if c.endswith(f"@{thr}")]
        t = Table(f"Table IV. DIP defense results by category, threshold {thr}", ["category", "n", *(m.split("@")[0] for m in methods)],
                  note="[low–high]: Wilson 95% interval. The paper's text: 95% on perturbed Fake-Wrong and 98% elsewhere at threshold "
                       f"0.25; its FGSM whitebox Fake-Wrong category fell from 100% (0.5) to 80% (0.25). Images requested per category: {requested}.")
        for r in rows:
            t.rows.append([r["category"], r["n"], *(rate(r[m], r["n"]) for m in methods)])
        tables.append(t)
    return tables


def sweep_table(ctx: dict[str, Any]) -> Table | None:
    """Accuracy per classification iteration T (the paper chose 6,000 from 2,500..7,500)."""
    rows = ctx["dip"]["sweep"]
    if not rows:
        return None
    cols = [c for c in rows[0] if "@" in c]
    n = ctx["dip"]["summary"].get("n_images")
    t = Table("Choice of T: accuracy per classification iteration", ["iteration", *cols],
              note=f"n = {n} images at every iteration; [low–high]: Wilson 95% interval. T is chosen on the study's own images.")
    for r in rows:
        t.rows.append([r["iteration"], *(rate(r[c], n) for c in cols)])
    return t


def settings_table(ctx: dict[str, Any]) -> Table:
    """What made these numbers: preset, overrides, seed, data, device, versions."""
    cfg, stored = ctx["cfg"], ctx["stored"]
    man = ctx["manifest"] or {}
    data_hash = man.get("manifest_hash") or "–"
    made = man.get("created_by", {})
    counts = man.get("counts", {})
    if man.get("in_place"):  # the user's folder or list, read where it is
        where = f" (read in place: {man.get('layout')})"
        size = "; ".join(f"{split} " + ", ".join(f"{n} {c}" for c, n in per.items()) for split, per in counts.items())
        size += f"; {len(man['groups'])} generator(s): {', '.join(man['groups'])}" if man.get("groups") else ""
    else:
        where = f" (made by: {made.get('command', '?')})" if made else ""
        size = f"{man.get('image_size')} px; train {counts.get('train')}, test {counts.get('test')}" if man else "–"
    rows = [
        ["preset", str(cfg["run"].get("preset"))],
        ["overrides", " ".join(cfg["run"].get("overrides", [])) or "none"],
        ["seed", str(cfg["run"]["seed"])],
        ["data", str(stored.get("data_arg") or "built-in synthetic faces") + where],
        ["data size", size],
        ["data fingerprint" if man.get("in_place") else "data manifest hash", data_hash],
        ["device", str(stored.get("device"))],
    ]
    rows += [[f"version: {k}", str(v)] for k, v in sorted(stored.get("versions", {}).items())]
    return Table("Settings of this run", ["setting", "value"], rows)


def stage_table(ctx: dict[str, Any]) -> Table:
    """Wall time per planned stage and where it ran, from the stage records."""
    t = Table("Wall time per stage", ["stage", "state", "seconds", "ran on"])
    total = 0.0
    for rec in ctx["stages"]:
        secs = float(rec.get("seconds") or 0.0)
        total += secs
        host = rec.get("host") or {}
        where = f"{host.get('device', '?')}, {host.get('cpus', '?')} CPUs" if host else "–"
        t.rows.append([rec["name"], rec.get("state", "?"), f"{secs:.1f}", where])
    t.rows.append(["total", "", f"{total:.1f}", ""])
    return t


def _flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


#: Why a preset may change a key, shown beside the difference (the value itself comes from the config).
WHY = {
    "train.optimizer": "SGD needs more epochs at small sizes",
    "train.vgg16.arch": "the paper's VGG-16 does not train reliably from random weights here",
    "attack.max_images": "a seeded subset of the fake test images per source model",
    "train.lipschitz.start": "the authors started from ImageNet weights",
    "train.vgg16.init": "random weights: this preset runs offline, without torchvision's ImageNet weights",
    "train.resnet18.init": "random weights: this preset runs offline, without torchvision's ImageNet weights",
}
#: Keys that only say how a run is labelled or scheduled, not what it computes.
NOT_SCIENCE = ("run.", "dip.batch_size", "attack.batch_size", "train.eval_batch_size", "dip.record_every",
               "train.hardened.", "certify.", "dip.purifiers", "robustness.", "adaptive.", "attack.apgd.", "attack.square.",
               "attack.ensemble", "attack.transfer_only", "attack.mifgsm.", "attack.dimifgsm.")  # the last ones go beyond the paper: nothing to differ from
#: Keys the fixed lines of :func:`differences` already state (the data source and the input size).
STATED = ("data.n", "data.size")


def config_differences(cfg: dict[str, Any], reference: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, ours, the reference's)`` for every key whose value differs (``None`` where one side lacks it).

    A per-architecture key (``train.vgg16.lr``) that the reference does not set is compared with
    the reference's common value (``train.lr``), which is what the reference trains with.
    """
    ours, theirs = _flatten(cfg), _flatten(reference)
    keys = list(theirs) + [k for k in ours if k not in theirs]
    out = []
    for key in keys:
        if key.startswith(NOT_SCIENCE):
            continue
        parts = key.split(".")
        common = f"train.{parts[-1]}" if len(parts) == 3 and parts[0] == "train" else None
        a, b = ours.get(key), theirs.get(key, theirs.get(common) if common else None)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and float(a) == float(b):
            continue
        if a != b:
            out.append((key, a, b))
    return out


def differences(ctx: dict[str, Any]) -> list[str]:
    """Where this run differs from the paper: its config against the ``paper`` preset key by key, and the fixed method changes."""
    from dfrobust.config import load_preset

    cfg, man = ctx["cfg"], ctx["manifest"] or {}
    user_data = bool(ctx["stored"].get("data_arg"))
    out = []
    if user_data:
        out.append(f"Data: the user's folder {ctx['stored']['data_arg']} instead of CelebA reals and few-shot face-translation GAN fakes.")
    else:
        out.append(f"Data: {cfg['data']['n']} built-in synthetic faces (procedural renderer, face-swap fakes) instead of 5,000 CelebA reals and 5,000 GAN fakes.")
    size = man.get("image_size")
    if size:
        out.append(f"Input size {size[0]}x{size[1]} px instead of the authors' 368x300.")
    adam = cfg["train"].get("optimizer") == "adam"
    for key, ours, theirs in config_differences(cfg, load_preset("paper")):
        if key in STATED or (user_data and key.startswith("data.swap")):
            continue  # settings of the built-in data, unused with the user's folder
        if adam and key.endswith("momentum"):
            continue  # Adam has no momentum setting
        if key == "train.optimizer" and ours == "adam":
            text = "Detectors train with Adam instead of the paper's SGD with momentum"
        elif key.endswith(".arch") and isinstance(ours, str) and ours.endswith("_gap"):
            text = f"`{key}` = {ours} (the paper: {theirs or key.split('.')[-2]}); global pooling before the classifier makes it several times cheaper on small images"
        else:
            text = f"`{key}` = {ours} (the paper: {'not set' if theirs is None else theirs})"
        why = WHY.get(key)
        out.append(f"{text}{f' ({why})' if why else ''}.")
    out.append("The model is selected on a validation split carved from training data, never on the test set as the authors' code did.")
    out.append("Adversarial images are stored and evaluated as lossless 8-bit PNGs (the authors saved JPEGs); "
               "CW restarts Adam for each of its per-image binary-search steps and keeps c inside its range (the authors' port did not).")
    out.append("DIP fits images at their own size (padded, not resized to 512x512 as the authors' code did).")
    return out


# ---------------------------------------------------------------- figures


def _fig2(ctx: dict[str, Any], figs: Path) -> Figure | None:
    """Real, fake and perturbed samples, each with the detectors' P(real), from the samples stage."""
    from dfrobust.attacks.base import attack_display
    from dfrobust.report.figures import plot_fig2
    from dfrobust.utils.io import load_image

    samples = ctx["samples"]
    if not samples or not samples["rows"]:
        return None
    models = samples["models"]
    labels = {r["name"]: r["label"] for r in ctx["roles"]}
    rows = []
    for row in samples["rows"]:
        label = row["kind"] if row["kind"] != "perturbed" else f"{attack_display(row['attack'])} (from {labels.get(row['source'], row['source'])})"
        cells = [(load_image(samples["dir"] / c["image"]), " / ".join(f"{c['p_real'][m]:.2f}" for m in models)) for c in row["cells"]]
        rows.append((label, cells))
    path = plot_fig2(rows, figs / "fig2.png")
    who = " / ".join(labels.get(m, m) for m in models)
    return Figure(path, f"Fig 2. Real, fake and perturbed test images; captions: P(real) by {who}.")


def _fig3(ctx: dict[str, Any], long_rows: list[dict[str, Any]], figs: Path) -> Figure | None:
    from dfrobust.report.attack_figures import plot_fig3

    group = next((r["group"] for r in ctx["roles"] if r.get("sample_source")), "paper")
    paper_models = [r["name"] for r in ctx["roles"] if r["group"] == group]
    rows = [r for r in long_rows if r["model"] in paper_models]
    if not rows:
        return None
    who = " and ".join(r["label"] for r in ctx["roles"] if r["group"] == group)
    columns = [k for k in table2_columns({r["model"]: {f"{r['attack']}_{r['setting']}": 0} for r in rows})]
    theirs = {m: dict(zip(columns, paper_table2(_paper_row(ctx, m), columns))) for m in paper_models}
    return Figure(plot_fig3(rows, figs / "fig3.png", paper=theirs), f"Fig 3. Accuracy of the {who} on unperturbed and perturbed fake test images.")


def _fig4(ctx: dict[str, Any], wide: dict[str, dict[str, float]], figs: Path) -> Figure | None:
    """Each average group (the paper: the Lipschitz ResNets) against the role its members start from."""
    from dfrobust.report.figures import plot_fig4

    for role in ctx["roles"]:
        group = role.get("average_group")
        if not group or f"{group} (average)" not in wide or role.get("start_from") not in wide:
            continue
        base = role["start_from"]
        columns = [c for c in next(iter(wide.values())) if c in wide[base]]
        series = (("unregularised", base), ("regularised (average)", f"{group} (average)"), ("regularised (best)", f"{group} (best)"))
        bars = {label: {column_label(c): wide[name].get(c) for c in columns} for label, name in series}
        theirs = {label: dict(zip(map(column_label, columns), paper_table2(_paper_row(ctx, name), columns))) for label, name in series}
        return Figure(plot_fig4(bars, figs / "fig4.png", paper=theirs), "Fig 4. Regularisation: the unregularised ResNet-18 vs the average and the best of the Lipschitz-regularised ones.")
    return None


# ---------------------------------------------------------------- rendering


def build_sections(ctx: dict[str, Any], figs: Path) -> tuple[list[Section], dict[str, Any]]:
    """The report's sections and the numbers behind them (for ``results.json``)."""
    results: dict[str, Any] = {"paper": {"table1": paper.TABLE1, "table2": paper.TABLE2, "table3": paper.TABLE3, "table4_text": paper.TABLE4_TEXT}}
    sections = []
    s = Section("Detectors on unperturbed data")
    if ctx["models"]:
        t, rows = table1(ctx)
        s.items.append(t)
        results["table1"] = rows
    else:
        s.items.append("No trained model yet.")
    sections.append(s)

    s = Section("Adversarial attacks")
    if ctx["attack_rows"]:
        t, long_rows, wide = table2(ctx)
        ctx["table2_rows"], ctx["table2_wide"] = long_rows, wide
        s.items.append(t)
        results["table2"] = long_rows
        results["table2_wide"] = wide
        results["transfer"] = transfer_rows(long_rows)
        if any(len({e["attack"] for e in r["transfers"]}) > 1 for r in results["transfer"]):
            s.items.append(transfer_table(results["transfer"], ordered_models(ctx, [r["model"] for r in results["transfer"]])))
        results["table2_groups"] = group_rows(ctx["attack_rows"])
        if results["table2_groups"]:
            s.items.append(group_table(results["table2_groups"], ordered_models(ctx, sorted({r["model"] for r in results["table2_groups"]}))))
        results["perturbations"] = perturbation_rows(ctx["attack_rows"])
        s.items.append(perturbation_table(results["perturbations"]))
        for fig in (_fig2(ctx, figs), _fig3(ctx, long_rows, figs)):
            if fig:
                s.items.append(fig)
        sections.append(s)
        s = Section("Lipschitz regularisation")
        fig = _fig4(ctx, wide, figs)
        s.items.append(fig if fig else "Regularised models not attacked yet.")
    else:
        s.items.append("No attack results yet.")
    sections.append(s)

    s = Section("Deep Image Prior defense")
    if ctx["dip"]:
        summ = ctx["dip"]["summary"]
        timing = summ.get("timing", {})
        s.items.append(f"Classifier: {ctx['dip']['role'].get('label', ctx['dip']['role'].get('model'))}. {summ.get('n_images', '?')} images; classification at iteration "
                       f"{summ.get('classify_at', '?')} of {summ.get('iterations_run', '?')} run; "
                       f"{timing.get('seconds_per_image', float('nan')):.1f} s per image amortised on {', '.join(timing.get('device', ['?']))} "
                       f"(batches of {timing.get('batch_size', '?')}; the paper: ~30 min per image on a K80).")
        if summ.get("notes"):
            s.items.append("Categories with fewer candidates than requested: " + "; ".join(summ["notes"]) + ".")
        s.items += [table3(ctx), *table4(ctx)]
        sw = sweep_table(ctx)
        if sw:
            s.items.append(sw)
        from dfrobust.report.dip_figures import draw_dip_figures

        drawn = draw_dip_figures(ctx["dip"]["dir"], figs)
        for name, caption in (("fig5", "Fig 5. Images generated along the DIP optimisation for a perturbed (FGSM) fake."),
                              ("fig6", "Fig 6. Classifier P(real) along the DIP optimisation: raw and window-averaged.")):
            if name in drawn:
                s.items.append(Figure(drawn[name], caption))
        results["table3"] = ctx["dip"]["table3"]
        results["table4"] = ctx["dip"]["table4"]
        results["sweep"] = ctx["dip"]["sweep"]
        results["dip_summary"] = summ
    else:
        s.items.append("The DIP study has not run yet.")
    sections.append(s)

    for make in (adaptive_section, defense_section):
        s = make(ctx, results, figs)
        if s is not None:
            sections.append(s)

    diffs = differences(ctx)
    sections.append(Section("Where this run differs from the paper", ["\n".join(f"- {d}" for d in diffs)]))
    sections.append(Section("How these numbers were made", [settings_table(ctx), stage_table(ctx)]))
    results["differences"] = diffs
    results["data"] = ctx["manifest"]
    results["settings"] = {"config": ctx["cfg"], "data_arg": ctx["stored"].get("data_arg"), "device": ctx["stored"].get("device"),
                           "versions": ctx["stored"].get("versions")}
    results["stages"] = [{k: r.get(k) for k in ("name", "state", "seconds")} for r in ctx["stages"]]
    return sections, results


def _md_paragraph(text: str) -> str:
    """A paragraph for Markdown: code spans (between backticks) stay, everything else is escaped."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:
        return "\n".join(md_escape(line) for line in str(text).splitlines())
    return "".join(f"`{p}`" if i % 2 else md_escape(p) for i, p in enumerate(parts))


def adaptive_section(ctx: dict[str, Any], results: dict[str, Any], figs: Path) -> Section | None:
    """Beyond the paper: Table V (adaptive attacks on the purifiers), robustness curves, Square's queries, masking checks."""
    from dfrobust.report.adaptive import adaptive_reading, curves_table, plot_curves, plot_square, square_rows, table5, warnings_lines

    if not (ctx["adaptive"] or ctx["curves"] or ctx["attack_rows"]):
        return None
    s = Section("Beyond the paper: adaptive evaluation")
    if ctx["adaptive"]:
        dip_non, dip_n = None, None
        if ctx["dip"]:
            wrong = next((r for r in ctx["dip"]["table4"] if r["category"] == "perturbed/fake-wrong"), None)
            if wrong and int(wrong["n"]):
                thr = "0.25" if "dip@0.25" in wrong else "0.5"
                dip_non, dip_n = float(wrong[f"dip@{thr}"]), int(wrong["n"])
        t, rows = table5(ctx["adaptive"], dip_non, dip_n)
        s.items += [adaptive_reading(rows), t]
        results["adaptive"] = rows
    if ctx["curves"]:
        results["robustness_curves"] = [{k: r[k] for k in ("model", "norm", "eps", "subset", "n", "accuracy", "ci_low", "ci_high")}
                                        for r in ctx["curves"]]
        for norm in ("linf", "l2"):
            path = plot_curves(ctx["curves"], norm, figs / f"curves-{norm}.png")
            if path:
                s.items.append(Figure(path, f"Robustness curve ({norm}): accuracy on fake test images under APGD at each radius, "
                                            "with Wilson 95% intervals."))
        s.items.append(curves_table(ctx["curves"]))
    warn = warnings_lines(ctx["curve_warnings"])
    if warn:
        s.items += ["Signs of gradient masking (checks in the spirit of AutoAttack's; each is a reason to distrust a gradient "
                    "attack's number for that model):", warn]
        results["masking_warnings"] = ctx["curve_warnings"]
    sq = square_rows(ctx["attack_rows"])
    if sq:
        path = plot_square(sq, figs / "square.png")
        if path:
            s.items.append(Figure(path, "Square attack: share of fakes passed as real within a query budget (whitebox scores, no gradients)."))
        results["square"] = {m: [{"queries": q, "success_rate": r, "n": n} for q, r, n in pts] for m, pts in sq.items()}
    return s if len(s.items) else None


def defense_section(ctx: dict[str, Any], results: dict[str, Any], figs: Path) -> Section | None:
    """Beyond the paper: the defense leaderboard, the trade-off figure and the certificates."""
    from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table, plot_tradeoff

    if not ctx["models"]:
        return None
    s = Section("Beyond the paper: defense leaderboard")
    rows = leaderboard_rows(ctx, ctx.get("table2_wide") or {})
    results["leaderboard"] = rows
    s.items.append("Every defended detector on equal terms: the paper's (Lipschitz regularisation, blur augmentation, DIP "
                   "purification) and the field's (adversarial training, Gaussian-noise training with randomized-smoothing "
                   "certificates). A defense is only as good as the strongest attack run against it; the DIP row is measured "
                   "against attacks that did not know the purifier unless its adaptive column is filled.")
    s.items.append(leaderboard_table(rows))
    path = plot_tradeoff(rows, figs / "tradeoff.png")
    if path:
        s.items.append(Figure(path, "Trade-off: robust accuracy (worst whitebox attack) vs clean accuracy per defense; marker area: training cost."))
    if ctx["certify"]:
        t = Table("Randomized-smoothing certificates (Cohen et al. 2019)", ["model", "sigma", "n", "n0 / n samples", "abstained",
                  *(f"certified @ L2 {r:g}" for r in (0.0, 0.25, 0.5, 1.0))],
                  note="Certified accuracy: the smoothed classifier is correct and certified at this L2 radius (pixels in [0, 1]); "
                       "Clopper-Pearson bounds at the given alpha; [low–high]: Wilson 95% interval over images.")
        for name, c in ctx["certify"].items():
            by = {round(float(a["radius"]), 4): a for a in c["certified_accuracy"]}
            st = c["settings"]
            t.rows.append([name, f"{st['sigma']:g}", str(c["n_images"]), f"{st['n0']} / {st['n']}", str(c["abstained"]),
                           *(rate(by[r]["accuracy"], by[r]["n"]) if r in by else "–" for r in (0.0, 0.25, 0.5, 1.0))])
        s.items.append(t)
        results["certify"] = ctx["certify"]
    return s


def _markdown(title: str, sections: list[Section], report_dir: Path) -> str:
    out = [f"# {md_escape(title)}", "", "Contents: " + " · ".join(f"[{md_escape(sec.title)}](#{_anchor(sec.title)})" for sec in sections), ""]
    for sec in sections:
        out += [f"## {md_escape(sec.title)}", ""]
        for item in sec.items:
            if isinstance(item, Table):
                out.append(item.to_markdown())
            elif isinstance(item, Figure):
                out += [f"![{md_escape(item.caption)}]({item.path.relative_to(report_dir).as_posix()})", "", f"_{md_escape(item.caption)}_", ""]
            else:
                out += [_md_paragraph(str(item)), ""]
    return "\n".join(out)


def _anchor(title: str) -> str:
    """The id of a section heading (GitHub's Markdown anchors: lower case, spaces to dashes, punctuation dropped)."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}caption{font-weight:600;text-align:left;padding:4px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}.note{font-size:12px;color:#555;margin-top:-0.5em}figure{margin:1.5em 0}
figure img{max-width:100%}figcaption{font-size:13px;color:#444}ul{line-height:1.5}
.scroll{overflow-x:auto;max-width:100%}nav{font-size:14px;line-height:1.6}"""


def _html(title: str, sections: list[Section]) -> str:
    toc = "".join(f'<li><a href="#{_anchor(sec.title)}">{html.escape(sec.title)}</a></li>' for sec in sections)
    body = [f"<h1>{html.escape(title)}</h1>", f"<nav><ul>{toc}</ul></nav>"]
    for sec in sections:
        body.append(f'<h2 id="{_anchor(sec.title)}">{html.escape(sec.title)}</h2>')
        for item in sec.items:
            if isinstance(item, Table):
                body.append(item.to_html())
            elif isinstance(item, Figure):
                data = base64.b64encode(item.path.read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(item.caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(item.caption)}</figcaption></figure>')
            elif str(item).startswith("- "):
                body.append("<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in str(item).splitlines()) + "</ul>")
            else:
                body.append(f"<p>{html.escape(str(item))}</p>")
    return f'<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{"".join(body)}</body></html>\n'


def summary_markdown(ctx: dict[str, Any], results: dict[str, Any]) -> str:
    """A short Markdown summary (Table II and the DIP headline) for a README or a chat message."""
    lines = []
    wide = results.get("table2_wide", {})
    if wide:
        # the paper's attacks both ways, the others whitebox only: their transfers get the line below
        columns = [c for c in table2_columns(wide) if c == "unperturbed" or attack_info(c.split("_")[0]).paper
                   or (c.endswith("_whitebox") and not attack_info(c.split("_")[0]).transfers)]
        from dfrobust.attacks.base import attack_info
        from dfrobust.studies.attack_tables import table2_counts

        counts = table2_counts(results.get("table2", []))
        lines += ["| model | n | " + " | ".join(map(column_label, columns)) + " |", "|---" * (len(columns) + 2) + "|"]
        for name, row in wide.items():
            vals = paper_table2(_paper_row(ctx, name), columns)
            n = counts.get(name, {})
            lines.append(f"| {name} | {n.get('unperturbed') or '–'} | "
                         + " | ".join(_both(row.get(k), vals[i], n.get(k, n.get("unperturbed"))) for i, k in enumerate(columns)) + " |")
        lines += ["", "Accuracy on the attacked fake test images (n of them; Square on fewer: its interval uses its own n), clean "
                      "and perturbed, with a Wilson 95% interval; in parentheses the paper's numbers."]
    rank = {name: i for i, name in enumerate(wide)}  # Table II's order
    transfers = sorted((r for r in results.get("transfer", []) if r["plain"] and r["strongest"]["attack"] != r["plain"]["attack"]),
                       key=lambda r: rank.get(r["model"], len(rank)))
    if transfers:
        lines += ["", "Strongest transfer (blackbox) beside the paper's plain FGSM, accuracy on the attacked fakes: "
                      + "; ".join(f"{r['model']} {pct(r['strongest']['accuracy'])} ({attack_label(r['strongest']['attack'])} from "
                                  f"{r['strongest']['source']}) vs {pct(r['plain']['accuracy'])}" for r in transfers) + "."]
    models = ctx.get("models") or {}
    if models:
        parts = []
        for name, meta in models.items():
            arch = f" ({meta['arch']})" if meta.get("arch") and not name.startswith(meta["arch"]) else ""
            m = meta.get("metrics", {})
            parts.append(f"{name}{arch} {pct(m.get('test', {}).get('accuracy'))}, gradient norm {m.get('input_grad_norm', float('nan')):.2f}")
        lines += ["", "Whole test split, both classes (Table I): " + "; ".join(parts) + "."]
    t3 = {(r["method"], float(r["threshold"])): r for r in results.get("table3", [])}
    if ("dip", 0.25) in t3 and ("baseline", 0.5) in t3:
        wrong = next((r for r in results.get("table4", []) if r["category"] == "perturbed/fake-wrong"), {})
        dip, theirs = t3[("dip", 0.25)], dict(zip(paper.TABLE3_COLUMNS, paper.TABLE3["dip@0.25"]))
        lines += ["", f"DIP defense ({dip['n']} images, threshold 0.25): accuracy {pct(dip['accuracy'])} "
                      f"(paper {theirs['accuracy']:.1f}%) vs {pct(t3[('baseline', 0.5)]['accuracy'])} undefended "
                      f"(paper {paper.TABLE3['baseline'][0]:.1f}%); on perturbed fakes that fooled the detector: "
                      f"{pct(wrong.get('dip@0.25'))} (paper {paper.TABLE4_TEXT['perturbed fake-wrong, DIP @0.25']:.0f}%); "
                      f"real images kept as real: {pct(dip['real_recall'])} (paper {theirs['real_recall']:.1f}%)."]
    for r in results.get("adaptive", []):
        if r.get("accuracy_adaptive_worst") is not None:
            non = (f"{pct(r['accuracy_nonadaptive'])} accuracy against the same attack ignoring the purifier, "
                   if r.get("accuracy_nonadaptive") is not None else "")
            lines += ["", f"Adaptive attack on {r['defense']} ({r['attack']}, BPDA {r['bpda']}, EOT {r['eot']}; n = {r['n']} fooled fakes): "
                          f"{non}{pct(r['accuracy_adaptive'])} against BPDA+EOT on one purification, {pct(r['accuracy_adaptive_worst'])} on "
                          "the worst of its draws."]
    board = [r for r in results.get("leaderboard", []) if r.get("robust_accuracy") is not None]
    if board:
        lines += ["", "Defense leaderboard, robust accuracy (worst whitebox attack, attacked fakes) / clean accuracy: "
                      + "; ".join(f"{r['defense']} {pct(r['robust_accuracy'])} / {pct(r['clean_accuracy'])}"
                                  + (" (non-adaptive)" if r.get("nonadaptive_only") else "")
                                  + (" (near chance: no robustness)" if r.get("near_chance") else "") for r in board) + "."]
    for name, c in (ctx.get("certify") or {}).items():
        by = {round(float(a["radius"]), 4): a for a in c["certified_accuracy"]}
        if 0.25 in by:
            lines += ["", f"Randomized smoothing ({name}, sigma {c['settings']['sigma']:g}, n = {c['n_images']} images, "
                          f"{c['settings']['n']} samples): certified accuracy {pct(by[0.25]['accuracy'])} at L2 radius 0.25"
                          + (f", {pct(by[0.5]['accuracy'])} at 0.5." if 0.5 in by else ".")]
    total = sum(float(r.get("seconds") or 0) for r in ctx["stages"])
    vers = ctx["stored"].get("versions", {})
    cpus = sorted({r["host"]["cpus"] for r in ctx["stages"] if r.get("host")})  # the machine that ran the stages, not this one
    where = vers.get("gpu") or (f"{'/'.join(map(str, cpus))} CPU cores" if cpus else "CPU")
    lines += ["", f"Preset `{ctx['cfg']['run'].get('preset')}`, seed {ctx['cfg']['run']['seed']}, {total / 60:.1f} min of stage time on "
                  f"{where} ({vers.get('platform', '?')}), torch {vers.get('torch', '?')}."]
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report/{report.html, report.md, results.json, figs/}``; returns the report folder."""
    from dfrobust.utils.io import atomic_path

    run_dir = Path(run_dir)
    ctx = collect(run_dir)
    report_dir = run_dir / "report"
    figs = report_dir / "figs"
    figs.mkdir(parents=True, exist_ok=True)
    sections, results = build_sections(ctx, figs)
    title = f"dfrobust report: {run_dir.name} (preset {ctx['cfg']['run'].get('preset')})"
    intro = Section("About", ["Reproduction of \"Adversarial Perturbations Fool Deepfake Detectors\" (Gandhi & Jain, IJCNN 2020). "
                              "Every number below comes from this run's files; numbers in parentheses are the paper's own, "
                              "labelled as such."])
    sections = [intro, *sections]
    with atomic_path(report_dir / "report.md") as tmp:
        tmp.write_text(_markdown(title, sections, report_dir), encoding="utf-8")
    with atomic_path(report_dir / "report.html") as tmp:
        tmp.write_text(_html(title, sections), encoding="utf-8")
    write_json(report_dir / "results.json", results)
    with atomic_path(report_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(ctx, results), encoding="utf-8")
    return report_dir
