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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from dfrobust.report import paper
from dfrobust.report.tables import Table, paper_pct, pct
from dfrobust.utils.io import read_csv, read_json, write_json

METRIC_KEYS = ("accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall")
METRIC_LABELS = ("accuracy", "AUROC", "fake precision", "fake recall", "real precision", "real recall")
T2_KEYS = ("unperturbed", "fgsm_blackbox", "fgsm_whitebox", "cw_blackbox", "cw_whitebox")
T2_LABELS = ("unperturbed", "FGSM blackbox", "FGSM whitebox", "CW-L2 blackbox", "CW-L2 whitebox")
LIP_AVERAGE = "resnet18-lip (average)"
LIP_BEST = "resnet18-lip (best)"


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


def _both(ours: Any, theirs: float | None) -> str:
    return f"{pct(ours)} ({paper_pct(theirs)})" if theirs is not None else pct(ours)


def _mean_of(dicts: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(d[key]) for d in dicts if d.get(key) not in (None, "")]
    return mean(vals) if vals else None


# ---------------------------------------------------------------- collecting the run's files


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, read from the run folder."""
    from dfrobust.data.manifest import read_manifest
    from dfrobust.pipeline import attack_plan, load_run_config, model_names, plan_study

    stored = load_run_config(run_dir)
    cfg = stored["config"]
    data_arg = Path(stored["data_arg"]) if stored.get("data_arg") else None
    plan = plan_study(cfg, run_dir, data_arg, stored.get("device", "auto"))
    ctx: dict[str, Any] = {"run_dir": run_dir, "stored": stored, "cfg": cfg, "plan": plan}
    ctx["stages"] = [read_json(p) for p in sorted((run_dir / ".stages").glob("*.json"))]
    ctx["manifest"] = read_manifest(plan.data_dir) if (plan.data_dir / "manifest.json").is_file() else None
    ctx["models"] = {}
    for name in model_names(cfg):
        side = plan.model_path(name).with_suffix(".json")
        if side.is_file() and plan.model_path(name).is_file():
            ctx["models"][name] = read_json(side)
    rows: list[dict[str, str]] = []
    ctx["attack_dirs"] = {}
    for attack, source, _ in attack_plan(cfg):
        folder = plan.attack_dir(attack, source)
        if (folder / "results.csv").is_file():
            ctx["attack_dirs"][(attack, source)] = folder
            rows += read_csv(folder / "results.csv")
    ctx["attack_rows"] = rows
    dip_dir = run_dir / "dip"
    ctx["dip"] = None
    if (dip_dir / "summary.json").is_file():
        ctx["dip"] = {
            "dir": dip_dir,
            "summary": read_json(dip_dir / "summary.json"),
            "table3": read_csv(dip_dir / "table3.csv"),
            "table4": read_csv(dip_dir / "table4.csv"),
            "sweep": read_csv(dip_dir / "sweep.csv") if (dip_dir / "sweep.csv").is_file() else [],
        }
    return ctx


# ---------------------------------------------------------------- tables


def table1(ctx: dict[str, Any]) -> tuple[Table, list[dict[str, Any]]]:
    """Table I: clean test metrics per model (ours, the paper's in parentheses)."""
    t = Table("Table I. Unperturbed test data", ["model", *METRIC_LABELS, "mean input-gradient norm"],
              note="In parentheses: the paper's numbers. Metrics on the whole test split (both classes).")
    out = []
    models = ctx["models"]
    lips = [n for n in models if "-lip" in n]
    order = [n for n in models if n not in lips and n != "resnet18-blur"] + lips + ([LIP_AVERAGE] if lips else []) + (["resnet18-blur"] if "resnet18-blur" in models else [])
    for name in order:
        if name == LIP_AVERAGE:
            tests = [models[n]["metrics"]["test"] for n in lips]
            m = {k: _mean_of(tests, k) for k in (*METRIC_KEYS, "input_grad_norm")}
        else:
            m = models[name]["metrics"]["test"]
        theirs = paper.TABLE1.get(name)
        cells = [_both(m.get(k), theirs[i] if theirs else None) for i, k in enumerate(METRIC_KEYS)]
        g = m.get("input_grad_norm")
        t.rows.append([name, *cells, f"{g:.3g}" if g is not None else "–"])
        out.append({"model": name, **{k: m.get(k) for k in (*METRIC_KEYS, "input_grad_norm")},
                    "paper": dict(zip(paper.TABLE1_COLUMNS, theirs)) if theirs else None})
    return t, out


def table2(ctx: dict[str, Any]) -> tuple[Table, list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Table II: accuracy on fake test images, clean and perturbed, per model, attack and setting."""
    from dfrobust.attacks.tables import table2_rows, table2_wide

    long_rows = table2_rows(ctx["attack_rows"]) if ctx["attack_rows"] else []
    wide = {r["model"]: r for r in table2_wide(long_rows)}
    names = [n for n in ctx["models"] if n in wide] + [n for n in wide if n not in ctx["models"]]
    lips = [n for n in names if "-lip" in n]
    if lips:
        wide[LIP_AVERAGE] = {k: _mean_of([wide[n] for n in lips], k) for k in T2_KEYS}
        wide[LIP_BEST] = {k: max((float(wide[n][k]) for n in lips if k in wide[n]), default=None) for k in T2_KEYS}
        blur_last = [n for n in names if n not in lips and n != "resnet18-blur"]
        names = blur_last + lips + [LIP_AVERAGE, LIP_BEST] + [n for n in names if n == "resnet18-blur"]
    t = Table("Table II. Accuracy on fake test images, unperturbed and perturbed", ["model", *T2_LABELS],
              note="In parentheses: the paper's numbers. Blackbox: crafted on the VGG-16 for every ResNet, on the ResNet-18 for the VGG-16. "
                   "Best regularised: the best lambda per column, as the paper's starred cells.")
    for name in names:
        row = wide[name]
        theirs = paper.TABLE2.get(name)
        if name == LIP_BEST:
            theirs = tuple(paper.TABLE2_BEST_REGULARISED[c] for c in paper.TABLE2_COLUMNS)
        t.rows.append([name, *(_both(row.get(k), theirs[i] if theirs else None) for i, k in enumerate(T2_KEYS))])
    return t, long_rows, {n: {k: wide[n].get(k) for k in T2_KEYS} for n in names}


def table3(ctx: dict[str, Any]) -> Table:
    """Table III: the DIP defense overall, per method and threshold, beside the paper's."""
    t = Table("Table III. DIP defense results overall", ["method", "threshold", "n", *METRIC_LABELS],
              note="In parentheses: the paper's numbers (its 100-image subsample). baseline = the undefended classifier; "
                   "dip = output at iteration T; dip-window = P(real) averaged over the window around T; jpeg/blur = cheap transforms.")
    for r in ctx["dip"]["table3"]:
        thr = float(r["threshold"])
        key = "baseline" if r["method"] == "baseline" and thr == 0.5 else f"dip@{thr:.2f}" if r["method"] == "dip" else None
        theirs = paper.TABLE3.get(key) if key else None
        t.rows.append([r["method"], f"{thr:g}", r["n"], *(_both(r[k], theirs[i] if theirs else None) for i, k in enumerate(METRIC_KEYS))])
    return t


def table4(ctx: dict[str, Any]) -> Table:
    """Table IV: accuracy per category of the DIP study (every method and threshold present)."""
    rows = ctx["dip"]["table4"]
    methods = [c for c in rows[0] if "@" in c] if rows else []
    t = Table("Table IV. DIP defense results by category", ["category", "n", *methods],
              note="The paper's text: 95% on perturbed Fake-Wrong and 98% elsewhere at threshold 0.25; its FGSM whitebox "
                   "Fake-Wrong category fell from 100% (0.5) to 80% (0.25). 'requested' images per category: "
                   + str(rows[0].get("requested", "") if rows else ""))
    for r in rows:
        t.rows.append([r["category"], r["n"], *(pct(r[m]) for m in methods)])
    return t


def sweep_table(ctx: dict[str, Any]) -> Table | None:
    """Accuracy per classification iteration T (the paper chose 6,000 from 2,500..7,500)."""
    rows = ctx["dip"]["sweep"]
    if not rows:
        return None
    cols = [c for c in rows[0] if "@" in c]
    t = Table("Choice of T: accuracy per classification iteration", ["iteration", *cols])
    for r in rows:
        t.rows.append([r["iteration"], *(pct(r[c]) for c in cols)])
    return t


def settings_table(ctx: dict[str, Any]) -> Table:
    """What made these numbers: preset, overrides, seed, data, device, versions."""
    cfg, stored = ctx["cfg"], ctx["stored"]
    man = ctx["manifest"] or {}
    from dfrobust.data.manifest import manifest_hash

    data_hash = manifest_hash(ctx["plan"].data_dir) if man else "–"
    made = man.get("created_by", {})
    counts = man.get("counts", {})
    rows = [
        ["preset", str(cfg["run"].get("preset"))],
        ["overrides", " ".join(cfg["run"].get("overrides", [])) or "none"],
        ["seed", str(cfg["run"]["seed"])],
        ["data", str(stored.get("data_arg") or "built-in synthetic faces") + (f" (made by: {made.get('command', '?')})" if made else "")],
        ["data size", f"{man.get('image_size')} px; train {counts.get('train')}, test {counts.get('test')}" if man else "–"],
        ["data manifest hash", data_hash],
        ["device", str(stored.get("device"))],
    ]
    rows += [[f"version: {k}", str(v)] for k, v in sorted(stored.get("versions", {}).items())]
    return Table("Settings of this run", ["setting", "value"], rows)


def stage_table(ctx: dict[str, Any]) -> Table:
    """Wall time per stage, from the stage records."""
    t = Table("Wall time per stage", ["stage", "state", "seconds"])
    total = 0.0
    for rec in ctx["stages"]:
        secs = float(rec.get("seconds") or 0.0)
        total += secs
        t.rows.append([rec["name"], rec.get("state", "?"), f"{secs:.1f}"])
    t.rows.append(["total", "", f"{total:.1f}"])
    return t


def differences(ctx: dict[str, Any]) -> list[str]:
    """Where this run differs from the paper, generated from its config."""
    cfg, man = ctx["cfg"], ctx["manifest"] or {}
    d, tr, at, dip = cfg["data"], cfg["train"], cfg["attack"], cfg["dip"]
    out = []
    if ctx["stored"].get("data_arg"):
        out.append(f"Data: the user's folder {ctx['stored']['data_arg']} instead of CelebA reals and few-shot face-translation GAN fakes.")
    else:
        out.append(f"Data: {d['n']} built-in synthetic faces (procedural renderer, face-swap fakes) instead of 5,000 CelebA reals and 5,000 GAN fakes.")
        if d.get("swap"):
            out.append(f"The built-in fakes use the swap knobs {d['swap']} instead of dfrobust's defaults.")
    size = man.get("image_size")
    if size:
        out.append(f"Input size {size[0]}x{size[1]} px instead of the authors' 368x300.")
    out.append("Detectors start from random weights (the authors' code used ImageNet weights); the model is selected on a "
               "validation split carved from training data, never on the test set as the authors' code did.")
    adam = tr.get("optimizer", "sgd") == "adam"
    if adam:
        out.append("Detectors train with Adam instead of the paper's SGD with momentum (SGD needs more epochs at small sizes).")
    for key, want in (("epochs", 5), ("batch_size", 16), ("lr", 1e-3), ("momentum", 0.9)):
        if tr.get(key) != want and not (adam and key == "momentum"):
            out.append(f"Training {key} = {tr.get(key)} instead of the paper's {want}.")
    for role in ("vgg16", "resnet18"):
        own = dict(tr.get(role) or {})
        arch = own.pop("arch", role)
        if arch != role:
            why = "the paper's " + role + " does not train reliably from random weights here"
            if arch.endswith("_gap"):
                why += "; global pooling before the classifier makes it several times cheaper on small images"
            out.append(f"The {role} detector is a {arch} ({why}).")
        if own:
            out.append(f"{arch} trained with {own} on top of the common settings.")
    if list(tr["lipschitz"]["lambdas"]) != [5.0, 50.0, 500.0, 5000.0]:
        out.append(f"Lipschitz lambdas {tr['lipschitz']['lambdas']} instead of 5, 50, 500, 5000.")
    if tr["lipschitz"].get("start") == "resnet18":
        out.append(f"The regularised ResNets start from the plain ResNet-18's weights and train {tr['lipschitz']['epochs']} more "
                   "epochs with the penalty (the authors started from ImageNet weights).")
    if tr["blur"]["epochs"] != 10:
        out.append(f"The blur model trains {tr['blur']['epochs']} more epochs instead of 10.")
    if at.get("max_images"):
        out.append(f"Attacks perturb a seeded subset of at most {at['max_images']} fake test images per source model, not all of them.")
    cw = at.get("cw", {})
    for key, want in (("max_steps", 1000), ("search_steps", 5), ("kappa", 200.0), ("lr", 0.01)):
        if key in cw and float(cw[key]) != float(want):
            out.append(f"CW-L2 {key} = {cw[key]} instead of the paper's {want}.")
    if "fgsm" in at and float(at["fgsm"].get("eps", 0.02)) != 0.02:
        out.append(f"FGSM eps = {at['fgsm']['eps']} instead of 0.02.")
    out.append("Adversarial images are stored and evaluated as lossless 8-bit PNGs (the authors saved JPEGs); "
               "CW restarts Adam for each of its per-image binary-search steps and keeps c inside its range (the authors' port did not).")
    if dip["iterations"] != 10000 or dip["classify_at"] != 6000:
        out.append(f"DIP runs {dip['iterations']} iterations and classifies at {dip['classify_at']} (the paper: 10,000 and 6,000).")
    if dip["per_category"] != 10:
        out.append(f"DIP study: {dip['per_category']} images per category instead of 10.")
    out.append("DIP fits images at their own size (padded, not resized to 512x512 as the authors' code did).")
    return out


# ---------------------------------------------------------------- figures


def _fig2(ctx: dict[str, Any], figs: Path) -> Figure | None:
    """Real, fake and perturbed samples, each with the detectors' P(real)."""
    from dfrobust.data.dataset import load_split
    from dfrobust.models.checkpoint import load_detector
    from dfrobust.models.inference import p_real
    from dfrobust.report.figures import plot_fig2
    from dfrobust.utils.io import load_image

    plan = ctx["plan"]
    dirs = {a: ctx["attack_dirs"].get((a, "resnet18")) for a in ("fgsm", "cw")}
    if not all(dirs.values()):
        return None
    by_image: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for a, folder in dirs.items():
        for r in read_csv(folder / "results.csv"):
            by_image.setdefault(r["image"], {})[(a, r["target"])] = r
    chosen = [img for img, rs in by_image.items() if len(rs) >= 4][:5]
    if not chosen:
        return None
    models = [m for m in ("resnet18", "vgg16") if plan.model_path(m).is_file()]
    short = {"resnet18": "R18", "vgg16": "VGG"}

    def cap(scores: dict[str, float]) -> str:
        return " ".join(f"{short[m]} {scores[m]:.2f}" for m in models if m in scores)

    real = load_split(plan.data_dir, "test", classes=["real"], limit=len(chosen), seed=0)
    real_scores = {m: p_real(load_detector(plan.model_path(m))[0], real.images()) for m in models}
    rows = [("real", [(real.images([i])[0], cap({m: float(real_scores[m][i]) for m in models})) for i in range(len(real))])]
    fake_cells, adv_cells = [], {a: [] for a in dirs}
    for img in chosen:
        rs = by_image[img]
        fake_cells.append((load_image(plan.data_dir / img), cap({m: float(rs[(a0, m)]["clean_p_real"]) for (a0, m) in rs if a0 == "fgsm"})))
        for a, folder in dirs.items():
            adv = load_image(folder / "images" / str(Path(img).with_suffix(".png")))
            adv_cells[a].append((adv, cap({m: float(rs[(a0, m)]["adv_p_real"]) for (a0, m) in rs if a0 == a})))
    rows += [("fake", fake_cells), ("FGSM (from ResNet-18)", adv_cells["fgsm"]), ("CW-L2 (from ResNet-18)", adv_cells["cw"])]
    path = plot_fig2(rows, figs / "fig2.png")
    return Figure(path, "Fig 2. Real, fake and perturbed test images (crafted on the ResNet-18); captions: P(real) by the ResNet-18 (whitebox) and the VGG-16 (blackbox).")


def _fig3(long_rows: list[dict[str, Any]], figs: Path) -> Figure | None:
    from dfrobust.report.attack_figures import plot_fig3

    rows = [r for r in long_rows if r["model"] in ("vgg16", "resnet18")]
    if not rows:
        return None
    return Figure(plot_fig3(rows, figs / "fig3.png"), "Fig 3. Accuracy of the VGG-16 and ResNet-18 on unperturbed and perturbed fake test images.")


def _fig4(wide: dict[str, dict[str, float]], figs: Path) -> Figure | None:
    from dfrobust.report.figures import plot_fig4

    if "resnet18" not in wide or LIP_AVERAGE not in wide:
        return None
    bars = {label: {T2_LABELS[i]: wide[name].get(k) for i, k in enumerate(T2_KEYS)}
            for label, name in (("unregularised", "resnet18"), ("regularised (average)", LIP_AVERAGE), ("regularised (best)", LIP_BEST))}
    return Figure(plot_fig4(bars, figs / "fig4.png"), "Fig 4. Regularisation: the unregularised ResNet-18 vs the average and the best of the Lipschitz-regularised ones.")


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
        s.items.append(t)
        results["table2"] = long_rows
        results["table2_wide"] = wide
        for fig in (_fig2(ctx, figs), _fig3(long_rows, figs)):
            if fig:
                s.items.append(fig)
        sections.append(s)
        s = Section("Lipschitz regularisation")
        fig = _fig4(wide, figs)
        s.items.append(fig if fig else "Regularised models not attacked yet.")
    else:
        s.items.append("No attack results yet.")
    sections.append(s)

    s = Section("Deep Image Prior defense")
    if ctx["dip"]:
        summ = ctx["dip"]["summary"]
        timing = summ.get("timing", {})
        s.items.append(f"Classifier: the blur-augmented ResNet-18. {summ.get('n_images', '?')} images; classification at iteration "
                       f"{summ.get('classify_at', '?')} of {summ.get('iterations_run', '?')} run; "
                       f"{timing.get('seconds_per_image', float('nan')):.1f} s per image amortised on {', '.join(timing.get('device', ['?']))} "
                       f"(batches of {timing.get('batch_size', '?')}; the paper: ~30 min per image on a K80).")
        if summ.get("notes"):
            s.items.append("Categories with fewer candidates than requested: " + "; ".join(summ["notes"]) + ".")
        s.items += [table3(ctx), table4(ctx)]
        sw = sweep_table(ctx)
        if sw:
            s.items.append(sw)
        for name, caption in (("fig5.png", "Fig 5. Images generated along the DIP optimisation for a perturbed (FGSM) fake."),
                              ("fig6.png", "Fig 6. Classifier P(real) along the DIP optimisation: raw and window-averaged.")):
            src = ctx["dip"]["dir"] / name
            if src.is_file():
                shutil.copyfile(src, figs / name)
                s.items.append(Figure(figs / name, caption))
        results["table3"] = ctx["dip"]["table3"]
        results["table4"] = ctx["dip"]["table4"]
        results["sweep"] = ctx["dip"]["sweep"]
        results["dip_summary"] = summ
    else:
        s.items.append("The DIP study has not run yet.")
    sections.append(s)

    diffs = differences(ctx)
    sections.append(Section("Where this run differs from the paper", ["\n".join(f"- {d}" for d in diffs)]))
    sections.append(Section("How these numbers were made", [settings_table(ctx), stage_table(ctx)]))
    results["differences"] = diffs
    results["settings"] = {"config": ctx["cfg"], "data_arg": ctx["stored"].get("data_arg"), "device": ctx["stored"].get("device"),
                           "versions": ctx["stored"].get("versions")}
    results["stages"] = [{k: r.get(k) for k in ("name", "state", "seconds")} for r in ctx["stages"]]
    return sections, results


def _markdown(title: str, sections: list[Section], report_dir: Path) -> str:
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for item in sec.items:
            if isinstance(item, Table):
                out.append(item.to_markdown())
            elif isinstance(item, Figure):
                out += [f"![{item.caption}]({item.path.relative_to(report_dir).as_posix()})", "", f"_{item.caption}_", ""]
            else:
                out += [str(item), ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}caption{font-weight:600;text-align:left;padding:4px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}.note{font-size:12px;color:#555;margin-top:-0.5em}figure{margin:1.5em 0}
figure img{max-width:100%}figcaption{font-size:13px;color:#444}ul{line-height:1.5}"""


def _html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for sec in sections:
        body.append(f"<h2>{html.escape(sec.title)}</h2>")
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
    return f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{"".join(body)}</body></html>\n'


def summary_markdown(ctx: dict[str, Any], results: dict[str, Any]) -> str:
    """A short Markdown summary (Table II and the DIP headline) for a README or a chat message."""
    import os

    lines = []
    wide = results.get("table2_wide", {})
    if wide:
        lines += ["| model | " + " | ".join(T2_LABELS) + " |", "|---" * (len(T2_KEYS) + 1) + "|"]
        for name, row in wide.items():
            theirs = paper.TABLE2_BEST_REGULARISED if name == LIP_BEST else dict(zip(paper.TABLE2_COLUMNS, paper.TABLE2.get(name, ())))
            vals = [theirs.get(c) for c in paper.TABLE2_COLUMNS] if theirs else [None] * len(T2_KEYS)
            lines.append(f"| {name} | " + " | ".join(_both(row.get(k), vals[i]) for i, k in enumerate(T2_KEYS)) + " |")
        lines += ["", "Accuracy on the attacked fake test images, clean and perturbed; in parentheses the paper's numbers."]
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
    total = sum(float(r.get("seconds") or 0) for r in ctx["stages"])
    vers = ctx["stored"].get("versions", {})
    lines += ["", f"Preset `{ctx['cfg']['run'].get('preset')}`, seed {ctx['cfg']['run']['seed']}, {total / 60:.1f} min of stage time on "
                  f"{vers.get('gpu') or f'{os.cpu_count()} CPU cores'} ({vers.get('platform', '?')}), torch {vers.get('torch', '?')}."]
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
