"""The worked examples of docs/architecture.md, run exactly as printed: a new attack file, a new
purifier file and a new stage kind file (with its report section), with nothing else edited,
appear in --help, run from the CLI, and show up in a ``reproduce --preset tiny`` report."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dfrobust.attacks
import dfrobust.defenses
import dfrobust.kinds
import dfrobust.report.sections
from dfrobust.attacks.base import ATTACKS
from dfrobust.cli import main
from dfrobust.config import study_config
from dfrobust.defenses.base import PURIFIERS, make_purifier
from dfrobust.kinds.base import STAGE_KINDS
from dfrobust.pipeline import reproduce
from dfrobust.report.sections import SECTIONS
from dfrobust.utils.io import read_csv, read_json, sha256_file
from dfrobust.utils.plugins import forget_discovery

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _example(after: str) -> str:
    """The first python block after the line ``Save as `...after...```."""
    text = DOC.read_text()
    start = text.index(f"Save as `{after}`")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture
def doc_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Save the examples as files in folders the packages scan, as a user would save them in src/."""
    saved = {reg: reg.classes() for reg in (ATTACKS, PURIFIERS, STAGE_KINDS, SECTIONS)}
    for package, name, path in (
        (dfrobust.attacks, "noise", "src/dfrobust/attacks/noise.py"),
        (dfrobust.defenses, "median", "src/dfrobust/defenses/median.py"),
        (dfrobust.kinds, "checksums", "src/dfrobust/kinds/checksums.py"),
    ):
        folder = tmp_path / package.__name__.replace(".", "_")
        folder.mkdir()
        (folder / f"{name}.py").write_text(_example(path))
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    forget_discovery()
    yield
    for reg, entries in saved.items():
        reg.entries.clear()
        reg.entries.update(entries)
    for mod in ("dfrobust.attacks.noise", "dfrobust.defenses.median", "dfrobust.kinds.checksums"):
        sys.modules.pop(mod, None)
    forget_discovery()


def test_the_documented_attack_and_purifier_reach_the_cli_and_the_report(
    doc_plugins: None, toy_dataset: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    assert "noise" in capsys.readouterr().out
    out = tmp_path / "noise"
    assert (
        main(
            [
                "attack",
                "--data",
                str(toy_dataset),
                "--source",
                str(toy_model),
                "--attack",
                "noise",
                "--eps",
                "0.05",
                "--max-images",
                "4",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = read_csv(out / "results.csv")
    assert rows and all(0 < float(r["linf"]) <= 0.05 + 1 / 255 for r in rows)
    x = __import__("torch").rand(2, 3, 8, 8)
    assert make_purifier("median", size=3)(x).shape == x.shape

    run = tmp_path / "run"
    cfg = study_config("tiny", ['attack.attacks=["fgsm","noise"]', 'dip.purifiers=["jpeg","median"]'])
    reproduce(cfg, run, device="cpu")
    results = read_json(run / "report" / "results.json")
    assert any(r["attack"] == "noise" for r in results["table2"])
    assert "noise_whitebox" in results["table2_wide"]["vgg16"]
    assert {r["method"] for r in results["table3"]} >= {"median", "jpeg", "dip"}
    page = (run / "report" / "report.html").read_text()
    assert "NOISE whitebox" in page and "median" in page
    # the stage kind: planned after the models without any edit, its file written, its section in the report
    plan = read_json(run / "plan.json")
    stage = next(s for s in plan["stages"] if s["name"] == "checksums")
    assert plan["checksums"] == "checksums.csv" and all(d.startswith("train/") for d in stage["deps"])
    sums = read_csv(run / "checksums.csv")
    assert {r["model"] for r in sums} == {r["name"] for r in plan["roles"]}
    assert all(r["sha256"] == sha256_file(run / "models" / f"{r['model']}.safetensors") for r in sums)
    md = (run / "report" / "report.md").read_text()
    assert "## Model checksums" in md and md.index("## Model checksums") < md.index("## Where this run differs from the paper")
    assert sums[0]["sha256"][:16] in page
