"""A survivors-only Square (AutoAttack's chain) in the report: its cells are on the survivors with their n and say so,
and robust accuracy counts the images it skipped as fooled."""

from __future__ import annotations

from typing import Any

from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.report.collected import CollectedRun
from dfrobust.report.leaderboard import leaderboard_rows, leaderboard_table
from dfrobust.report.study_tables import table2
from dfrobust.report.verdicts import masking_by_target, robust_by_target

SQUARE = "SQUARE-LINF score-based black-box on survivors of APGD-CE-LINF"


def _row(i: int, attack: str, fooled: bool | None, **extra: Any) -> dict[str, Any]:
    adv = "" if fooled is None else str(int(fooled))
    return {"image": f"fake/{i:03d}.png", "label": "0", "attack": attack, "source": "a", "target": "a", "setting": "whitebox",
            "clean_pred": "0", "adv_pred": adv, "success": adv, "l2": "1.0" if adv else "", "linf": "0.02" if adv else "",
            "psnr": "40" if adv else "", "ssim": "0.99" if adv else "", "seconds": "0.1" if adv else "", **extra}  # fmt: skip


def _run() -> CollectedRun:
    """APGD keeps 8 of 20 fakes; Square attacks those 8 (keeps 5) and skips the 12 APGD fooled."""
    chain = {"survivors_of": "apgd-ce-linf"}
    apgd = [_row(i, "apgd-ce-linf", i >= 8) for i in range(20)]
    square = [_row(i, "square-linf", i >= 5, skipped="", **chain) for i in range(8)]
    skipped = [_row(i, "square-linf", None, skipped="fooled by apgd-ce-linf", **chain) for i in range(8, 20)]
    return CollectedRun(
        attack_rows=apgd + square,
        skipped_rows=skipped,
        attack_budgets={"apgd-ce-linf": ("linf", 0.02), "square-linf": ("linf", 0.02)},
        roles=[{"name": "a", "group": "mine", "label": "A", "sample_source": True}],
        plan={"attacks": []},
        models={"a": {"metrics": {"test": {"n": 100, "accuracy": 0.9, "auroc": 0.95}}}},
        cfg={"run": {"preset": "test", "seed": 0}, "threat_model": {"norm": "linf", "eps": 0.02}},
    )


def _interval(kept: int, n: int) -> str:
    lo, hi = wilson_interval(kept, n)
    return f"{100 * kept / n:.1f}% [{100 * lo:.1f}–{100 * hi:.1f}]"


def test_the_survivors_column_is_labelled_and_has_its_own_n() -> None:
    run = _run()
    t2 = table2(run)
    row = dict(zip(t2.table.columns, t2.table.rows[0]))
    assert row[SQUARE] == _interval(5, 8) + " (n=8)" and row["n"] == "20"
    assert "On survivors (AutoAttack's chain)" in t2.table.note
    assert t2.counts["a"]["square-linf_whitebox"] == 8
    board = leaderboard_rows(run, t2, robust_by_target(run), {"norm": "linf", "eps": 0.02})
    cells = dict(zip(leaderboard_table(board).columns, leaderboard_table(board).rows[0]))
    assert cells[SQUARE] == _interval(5, 8) + " (n=8)"
    assert board[0]["survivors_of"] == {"square-linf_whitebox": "apgd-ce-linf"}


def test_robust_accuracy_counts_the_skipped_fakes_as_fooled() -> None:
    ra = robust_by_target(_run())["a"]
    assert (ra.k, ra.n) == (5, 20)  # not 5 of 8 (Square's survivors), nor 8 of 20 (APGD alone)
    assert ra.attacks == ["apgd-ce-linf", "square-linf"]


def test_a_square_that_fooled_few_survivors_is_no_masking_sign() -> None:
    """Square fooled 3 of APGD's 8 survivors, fewer than the 12 APGD fooled: not 'certainly stronger'."""
    assert not any("gradient-free" in w for w in masking_by_target(_run()).get("a", []))
