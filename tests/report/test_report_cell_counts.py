"""Every rate's interval and n are its own cell's: two attacks on one model on different numbers of fakes, and an
ensemble's transfer on a third number, keep their own n in Table II, the leaderboard, summary.md and the
by-generator table (a cell that borrowed its model's or another cell's n would show another interval)."""

from __future__ import annotations

from typing import Any

from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.report.by_group import group_rows, group_table
from dfrobust.report.collected import CollectedRun
from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table
from dfrobust.report.study_tables import table2
from dfrobust.report.summary import summary_markdown

#: (attack, setting, source, fakes attacked, of them still detected after the attack); every fake is detected clean
CELLS = (("fgsm", "whitebox", "a", 20, 5), ("square-linf", "whitebox", "a", 10, 5), ("fgsm", "blackbox", "b", 12, 9))
ENSEMBLE = ("dimifgsm", "blackbox", "ensemble(b+c)", 6, 3)


def _rows(attack: str, setting: str, source: str, n: int, kept: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"image": f"fake/{i:03d}.png", "label": "0", "attack": attack, "source": source, "target": "a", "setting": setting,
         "clean_pred": "0", "adv_pred": "0" if i < kept else "1", "success": "0" if i < kept else "1", "l2": "1.0",
         "linf": "0.02", "psnr": "40", "ssim": "0.99", "seconds": "0.1", "group": "progan" if i % 2 else "stylegan", **extra}
        for i in range(n)
    ]  # fmt: skip


def _run() -> CollectedRun:
    rows = [r for c in CELLS for r in _rows(*c)] + _rows(*ENSEMBLE, source_members="b+c")
    return CollectedRun(
        attack_rows=rows,
        roles=[{"name": "a", "group": "mine", "label": "A", "sample_source": True}],
        plan={"attacks": [{"source": "ensemble(b+c)", "members": ["b", "c"]}]},
        models={"a": {"metrics": {"test": {"n": 100, "accuracy": 0.9, "auroc": 0.95}}}},
        cfg={"run": {"preset": "test", "seed": 0}},
    )


def _interval(kept: int, n: int) -> str:
    lo, hi = wilson_interval(kept, n)
    return f"{100 * kept / n:.1f}% [{100 * lo:.1f}–{100 * hi:.1f}]"


def test_table2_cells_carry_their_own_n_and_interval() -> None:
    t = table2(_run()).table
    row = dict(zip(t.columns, t.rows[0]))
    assert row["n"] == "20"  # the model's most-attacked column
    assert row["FGSM whitebox"] == _interval(5, 20)
    assert row["SQUARE-LINF score-based black-box"] == _interval(5, 10) + " (n=10)"  # not 20's interval
    assert row["FGSM blackbox"] == _interval(9, 12) + " (n=12)"
    ensemble = next(v for k, v in row.items() if "ensemble" in k)
    assert ensemble == _interval(3, 6) + " (n=6)"  # an ensemble's column has its own count too


def test_leaderboard_cells_carry_their_own_n() -> None:
    run = _run()
    rows = leaderboard_rows(run, table2(run), None, {"norm": "linf", "eps": 0.02})
    assert rows[0]["n_whitebox"] == {"fgsm_whitebox": 20, "square-linf_whitebox": 10}
    assert rows[0]["blackbox"] == 0.5 and rows[0]["n_blackbox"] == 6  # the worst transfer: the ensemble's, on 6 fakes
    cells = dict(zip(leaderboard_table(rows).columns, leaderboard_table(rows).rows[0]))
    assert cells["SQUARE-LINF score-based black-box"] == _interval(5, 10) + " (n=10)"
    assert cells["best blackbox transfer"] == _interval(3, 6) + " (n=6)"
    assert cells["clean accuracy (n)"] == _interval(90, 100) + " (100)"


def test_summary_cells_carry_their_own_n() -> None:
    run = _run()
    t2 = table2(run)
    md = summary_markdown(run, {"table2": t2.rows, "table2_wide": t2.wide, "table2_wide_n": t2.counts})
    line = next(x for x in md.splitlines() if x.startswith("| a |"))
    assert _interval(5, 20) in line and _interval(5, 10) + " (n=10)" in line
    assert _interval(5, 10).split(" ")[1] != _interval(10, 20).split(" ")[1]  # the two ns give different intervals


def test_by_generator_cells_carry_their_own_n() -> None:
    groups = group_rows(_run().attack_rows)
    t = group_table(groups, ["a"])
    row = dict(zip(t.columns, next(r for r in t.rows if r[0] == "a / progan")))
    assert row["n"] == "10"  # fgsm whitebox: 10 of its 20 fakes are progan's
    assert row["SQUARE-LINF score-based black-box"] == _interval(2, 5) + " (n=5)"  # progan: odd i; kept: i < 5, so 1 and 3


def test_results_json_rows_carry_each_rate_s_n_and_interval() -> None:
    from dfrobust.report.study_tables import long_row_intervals

    run = _run()
    square = long_row_intervals(next(r for r in table2(run).rows if r["attack"] == "square-linf"))
    assert square["perturbed_accuracy_n"] == 10 and square["perturbed_accuracy_ci"] == list(wilson_interval(5, 10))
    assert square["success_rate_on_correct_n"] == 10 and square["success_rate_on_correct_ci"] == list(wilson_interval(5, 10))
    row = leaderboard_rows(run, table2(run), None, {"norm": "linf", "eps": 0.02})[0]
    assert row["whitebox_ci"]["square-linf_whitebox"] == list(wilson_interval(5, 10))
    assert row["blackbox_ci"] == list(wilson_interval(3, 6)) and row["clean_accuracy_ci"] == list(wilson_interval(90, 100))


def test_summary_cells_keep_their_n_beside_a_transfer_the_table_leaves_out() -> None:
    """A role's extra transfer (its ``transfer_to``: to the transfer table, not Table II) must not cost Table II's
    blackbox cell its n in summary.md (it did: the extra source renamed the column in results.json's long rows)."""
    from dataclasses import replace

    from dfrobust.studies.attack_tables import table2_counts

    run = _run()
    extra_role = {"name": "c", "group": "mine", "transfer_to": ["a"]}
    run = replace(run, attack_rows=[*run.attack_rows, *_rows("fgsm", "blackbox", "c", 8, 4)], roles=[*run.roles, extra_role])
    t2 = table2(run)
    assert t2.wide["a"]["fgsm_blackbox"] == 0.75  # Table II keeps the paper's transfer (from b: 9 of 12) ...
    assert "fgsm_blackbox" not in table2_counts(t2.rows)["a"]  # ... which the long rows alone name after their source
    assert t2.counts["a"]["fgsm_blackbox"] == 12  # Table II's own counts do (the leaderboard and summary read them)
    results = {"table2": t2.rows, "table2_wide": t2.wide, "table2_wide_n": t2.counts}
    line = next(x for x in summary_markdown(run, results).splitlines() if x.startswith("| a |"))
    assert _interval(9, 12) + " (n=12)" in line
