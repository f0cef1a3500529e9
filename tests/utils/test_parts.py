"""The sharded part store: seeded assignment, completion marks, resume, merge order; the distributed context."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfrobust.errors import DfrobustError
from dfrobust.utils import distributed
from dfrobust.utils.io import read_csv, write_csv, write_json
from dfrobust.utils.parts import PartStore, assign, plan_units


def test_units_cover_the_order_once_and_the_assignment_is_seeded_and_balanced() -> None:
    units = plan_units(10, 4)
    assert [(u.start, u.stop) for u in units] == [(0, 4), (4, 8), (8, 10)]
    for world in (1, 2, 3, 5, 8):
        owners = assign(23, world, seed=3)
        assert owners == assign(23, world, seed=3)  # fixed
        shares = [owners.count(r) for r in range(world)]
        assert sum(shares) == 23 and max(shares) - min(shares) <= 1  # every unit once, balanced, no padding
    assert assign(23, 4, seed=0) != assign(23, 4, seed=1)  # seeded
    assert assign(5, 1) == [0] * 5
    with pytest.raises(DfrobustError):
        plan_units(3, 0)


def _store(tmp_path: Path, fingerprint: str = "f1", unit_size: int = 3) -> PartStore:
    return PartStore(tmp_path / "parts", fingerprint, 8, unit_size, seed=0, payloads=(".csv",))


def _work(store: PartStore, rank: int, world: int) -> list[int]:
    done = []
    for unit in store.todo(rank, world):
        write_csv(store.path(unit, ".csv"), [{"i": i} for i in range(unit.start, unit.stop)])
        store.finish(unit, rank, world)
        done.append(unit.index)
    return done


def test_ranks_split_the_units_and_the_merge_keeps_the_global_order(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = _work(store, 1, 2)
    assert first and not store.complete() and [u.index for u in store.missing()] == sorted(set(range(3)) - set(first))
    second = _work(store, 0, 2)
    assert sorted(first + second) == [0, 1, 2] and store.complete() and store.missing() == []
    rows = store.merge(lambda u: read_csv(store.path(u, ".csv")))
    assert [int(r["i"]) for r in rows] == list(range(8))
    ranks = store.ranks()
    assert {r["rank"] for r in ranks} == {0, 1} and sum(r["images"] for r in ranks) == 8
    assert all(r["world_size"] == 2 for r in ranks)


def test_a_unit_counts_only_with_its_mark_payload_fingerprint_and_size(tmp_path: Path) -> None:
    store = _store(tmp_path)
    unit = store.units[0]
    write_csv(store.path(unit, ".csv"), [{"i": 0}])
    assert not store.is_done(unit)  # a payload without its mark: killed before the mark
    store.finish(unit)
    assert store.is_done(unit)
    assert not _store(tmp_path, fingerprint="f2").is_done(unit)  # another run's part is redone
    wider = _store(tmp_path, unit_size=4)
    assert not wider.is_done(wider.units[0])  # another unit size
    store.path(unit, ".csv").unlink()
    assert not store.is_done(unit)  # a mark without its payload
    write_csv(store.path(unit, ".csv"), [{"i": 0}])
    store.mark_path(unit).write_text("{not json")
    assert not store.is_done(unit) and store.read_mark(unit) is None  # a damaged mark: the unit runs again
    write_json(store.mark_path(unit), ["a list"])
    assert store.read_mark(unit) is None
    with pytest.raises(DfrobustError, match="missing"):
        store.merge(lambda u: [])


def test_a_rerun_with_another_world_size_does_only_the_missing_units(tmp_path: Path) -> None:
    store = _store(tmp_path)
    dead = _work(store, 0, 2)  # rank 1 of 2 never ran
    stamps = {i: store.mark_path(store.units[i]).stat().st_mtime_ns for i in dead}
    redo = _work(store, 0, 1)
    assert sorted(redo) == sorted(set(range(3)) - set(dead))
    assert {i: store.mark_path(store.units[i]).stat().st_mtime_ns for i in dead} == stamps
    assert sum(r["images"] for r in store.ranks()) == 8
    assert {(r["world_size"], r["rank"]) for r in store.ranks()} == {(2, 0), (1, 0)}


def test_context_reads_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == distributed.Context()  # no torchrun: one process, nothing started
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ctx = distributed.env_context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, ctx.group) == (3, 4, 1, 2, False)
    assert not ctx.is_main and ctx.sharded
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DfrobustError, match="torchrun"):
        distributed.setup("cpu")
    # explicit flags win over the environment and start no group
    assert distributed.shard(1, 2) == distributed.Context(1, 2, 1, 2, group=False)
    with pytest.raises(DfrobustError, match="--rank"):
        distributed.shard(2, 2)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(DfrobustError, match="RANK"):
        distributed.env_context()


def test_merge_once_without_a_group_merges_when_complete() -> None:
    ctx = distributed.Context(1, 2)
    assert distributed.merge_once(ctx, lambda: False, lambda: "merged", lambda: "read") is None
    assert distributed.merge_once(ctx, lambda: True, lambda: "merged", lambda: "read") == "merged"
