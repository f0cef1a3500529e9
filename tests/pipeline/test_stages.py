"""The stage cache: skip when done, resume when interrupted, rerun downstream on changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfrobust.stages import Stage, StageRunner


def _writer(path: Path, text: str, calls: list[str]):
    def fn() -> None:
        calls.append(path.name)
        path.write_text(text)

    return fn


def _pipeline(run: Path, a_value: int, calls: list[str]) -> list[Stage]:
    a = Stage("data/a", {"v": a_value}, run / "a.txt", _writer(run / "a.txt", str(a_value), calls))
    b = Stage("train/b", {"w": 1}, run / "b.txt", _writer(run / "b.txt", "b", calls), deps=["data/a"])
    return [a, b]


def test_done_stages_are_skipped(tmp_path: Path) -> None:
    calls: list[str] = []
    for st in _pipeline(tmp_path, 1, calls):
        StageRunner(tmp_path, log=lambda s: None).run(st)
    runner = StageRunner(tmp_path, log=lambda s: None)
    assert [runner.run(st) for st in _pipeline(tmp_path, 1, calls)] == [False, False]
    assert calls == ["a.txt", "b.txt"]


def test_changed_config_reruns_the_stage_and_its_dependents(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = StageRunner(tmp_path, log=lambda s: None)
    for st in _pipeline(tmp_path, 1, calls):
        runner.run(st)
    for st in _pipeline(tmp_path, 2, calls):
        runner.run(st)
    assert calls == ["a.txt", "b.txt", "a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "2"


def test_force_reruns_one_group_and_downstream(tmp_path: Path) -> None:
    calls: list[str] = []
    for st in _pipeline(tmp_path, 1, calls):
        StageRunner(tmp_path, log=lambda s: None).run(st)
    runner = StageRunner(tmp_path, force={"data"}, log=lambda s: None)
    ran = [runner.run(st) for st in _pipeline(tmp_path, 1, calls)]
    assert ran == [True, True]  # b's upstream token changed


def test_interrupted_stage_is_partial_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "x.txt"

    def boom() -> None:
        out.write_text("half")
        raise KeyboardInterrupt

    runner = StageRunner(tmp_path, log=lambda s: None)
    st = Stage("s/x", {"k": 1}, out, boom)
    with pytest.raises(KeyboardInterrupt):
        runner.run(st)
    assert runner.state(st) == "partial"
    seen: list[str] = []

    def resume() -> None:
        seen.append(out.read_text())  # the partial output is still there to resume from
        out.write_text("full")

    assert runner.run(Stage("s/x", {"k": 1}, out, resume))
    assert seen == ["half"] and runner.state(st) == "done"
    assert runner.record("s/x")["seconds"] >= 0
