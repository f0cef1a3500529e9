"""Cached, resumable stages of a run folder.

A stage is a function of (config, upstream stages) that writes one output (a file or a
folder) in the run folder. The :class:`StageRunner` keys each stage by a hash of its config
and of the fingerprints of the stages it depends on:

* finished with the same key -> skipped;
* never finished (killed) with the same key -> run again; the stage function resumes from
  its own partial files (training epochs, attack and DIP batches);
* key changed (a setting changed, or an upstream stage was redone) -> its output is removed
  and it runs from scratch, and so does everything downstream (their keys change too).
  A stage marked ``keep_output`` keeps its output and runs again: its function checks its own
  finer fingerprints and redoes only what changed (an attack re-scores its stored images on a
  retrained target; the DIP study keeps its batches while its input images are unchanged).

Bookkeeping lives in ``RUN/.stages/<name>.json`` (one file per stage, written atomically).
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfrobust.errors import DfrobustError
from dfrobust.utils import distributed
from dfrobust.utils.io import read_record, sha256_bytes, to_json, write_json
from dfrobust.utils.names import is_inside
from dfrobust.utils.runfolder import STAGES_DIR, stage_record_path

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """One unit of cached work.

    Attributes:
        name: unique name, ``group/item`` (e.g. ``train/resnet18-lip50``).
        config: everything that determines the output (JSON-serialisable).
        output: the file or folder it writes.
        fn: does the work (writes ``output``; may resume from its own partial files).
        deps: names of the stages whose outputs it reads.
        extra_paths: other paths that belong to the output (e.g. a model's sidecar and its
            partial-training files) and are removed with it when the key changes.
        keep_output: on a key change, leave the output for ``fn`` to reuse what is still valid
            (``fn`` must check that itself); ``--force`` still removes it.
        device: the device the stage computes on (recorded with the host that ran it).
        sharded: under torchrun every rank runs the function, which splits the work itself;
            otherwise rank 0 alone runs it.
    """

    name: str
    config: dict[str, Any]
    output: Path
    fn: Callable[[], Any]
    deps: list[str] = field(default_factory=list)
    extra_paths: list[Path] = field(default_factory=list)
    keep_output: bool = False
    device: str = "cpu"
    sharded: bool = False

    def record(self, run_dir: Path) -> dict[str, Any]:
        """What ``plan.json`` keeps of the stage: enough to compute its state without re-planning."""

        def rel(p: Path) -> str:
            return str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p)

        return {
            "name": self.name,
            "config": self.config,
            "output": rel(self.output),
            "deps": self.deps,
            "extra_paths": [rel(p) for p in self.extra_paths],
            "keep_output": self.keep_output,
            "device": self.device,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], run_dir: Path) -> Stage:
        """A stage read back from ``plan.json`` (it cannot run: its function is gone)."""

        def cannot_run() -> None:
            raise RuntimeError(f"stage {rec['name']} was read from plan.json and cannot run")

        def path(p: str) -> Path:
            return Path(p) if Path(p).is_absolute() else run_dir / p

        return cls(
            rec["name"],
            rec["config"],
            path(rec["output"]),
            cannot_run,
            list(rec["deps"]),
            [path(p) for p in rec.get("extra_paths", [])],
            bool(rec.get("keep_output")),
            rec.get("device", "cpu"),
        )


def force_matches(name: str, force: str) -> bool:
    """Whether ``--force force`` selects stage ``name``: the stage, a group (``attack``, ``train``) or an
    attack's runs on every source (``attack/cw`` for ``attack/cw-resnet18``)."""
    group = force.rstrip("/")
    if name == group or name.startswith(group + "/"):
        return True
    return group.startswith("attack/") and group.count("/") == 1 and name.startswith(group + "-")


def resolved_device(name: str) -> str:
    """The device a stage ran on, ``auto`` resolved: ``cpu``, or ``cuda:0 (NVIDIA H200)``; the name as given if it cannot be."""
    try:
        import torch

        from dfrobust.utils.runtime import resolve_device

        dev = resolve_device(name)
        if dev.type == "cuda":
            index = torch.cuda.current_device() if dev.index is None else dev.index
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        return str(dev)
    except Exception:  # a device this process cannot see: keep what was asked for
        return str(name)


class StageRunner:
    """Runs stages in a run folder with caching and resumption (see the module docstring)."""

    def __init__(self, run_dir: str | Path, force: set[str] | None = None, log: Callable[[str], None] = log.info) -> None:
        self.run_dir = Path(run_dir)
        self.book = self.run_dir / STAGES_DIR
        self.force = set(force or ())
        self.log = log
        self._forced_done: set[str] = set()

    def _book_file(self, name: str) -> Path:
        return stage_record_path(self.run_dir, name)

    def record(self, name: str) -> dict[str, Any] | None:
        """The bookkeeping record of a stage, or ``None`` if it never started."""
        path = self._book_file(name)
        return read_record(path) if path.is_file() else None

    def key(self, stage: Stage) -> str:
        """Hash of the stage's config and of its upstream fingerprints."""
        deps = {d: self.fingerprint(d) for d in sorted(stage.deps)}
        return sha256_bytes(to_json({"name": stage.name, "config": stage.config, "deps": deps}).encode())[:16]

    def fingerprint(self, name: str) -> str | None:
        """``key:token`` of a finished stage (the token changes whenever it is redone)."""
        rec = self.record(name)
        if not rec or rec.get("state") != "done":
            return None
        return f"{rec['key']}:{rec['token']}"

    def state(self, stage: Stage) -> str:
        """``done``, ``stale`` (done under another key), ``partial`` (started, unfinished) or ``todo``."""
        rec = self.record(stage.name)
        if rec is None:
            return "todo"
        key = self.key(stage)
        if rec.get("key") != key:
            return "stale"
        return "done" if rec.get("state") == "done" and stage.output.exists() else "partial"

    def _matches_force(self, name: str) -> bool:
        return any(force_matches(name, f) for f in self.force)

    def _clear(self, stage: Stage) -> None:
        for path in [stage.output, *stage.extra_paths]:
            # only what this run made: a path inside the run folder, never a link someone put there
            if path.is_symlink():
                raise DfrobustError(f"{path} is a link, which dfrobust never makes; remove it yourself to rerun stage {stage.name}")
            if path.exists() and not is_inside(path, self.run_dir):
                raise DfrobustError(f"stage {stage.name} writes {path}, outside the run folder {self.run_dir}; nothing was deleted")
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def run(self, stage: Stage) -> bool:
        """Run ``stage`` unless it is done; returns ``True`` if it ran.

        Under torchrun (a started process group) rank 0 decides, clears and keeps the records;
        every rank runs a ``sharded`` stage (its function splits the work), rank 0 alone the others.
        """
        ctx = distributed.env_context()
        decision = self._decide(stage) if ctx.is_main else None
        if ctx.group:
            decision = distributed.broadcast(decision, ctx)
        if decision is None:
            return False
        key, state, seconds_before = decision
        t0, started = time.perf_counter(), time.time()
        try:
            if stage.sharded or ctx.is_main:
                stage.fn()
            if ctx.group:
                distributed.barrier(ctx)
        except BaseException:
            if ctx.is_main:
                rec = {"name": stage.name, "key": key, "state": "interrupted", "config": stage.config}
                rec["seconds"] = seconds_before + time.perf_counter() - t0
                write_json(self._book_file(stage.name), rec)
            raise
        if ctx.is_main:
            self._finish(stage, key, seconds_before + time.perf_counter() - t0, started, ctx.world_size)
        if ctx.group:
            distributed.barrier(ctx)
        return True

    def _decide(self, stage: Stage) -> tuple[str, str, float] | None:
        """``None`` when the stage is done; else clear what must go, mark it running, return ``(key, state, seconds so far)``."""
        missing = [d for d in stage.deps if self.fingerprint(d) is None]
        if missing:
            raise RuntimeError(f"stage {stage.name} runs before its inputs {missing}")
        forced = self._matches_force(stage.name) and stage.name not in self._forced_done
        state = self.state(stage)
        if state == "done" and not forced:
            self.log(f"[skip] {stage.name} (done)")
            return None
        key = self.key(stage)
        if forced or (state == "stale" and not stage.keep_output):
            self._clear(stage)
        if forced:
            self._forced_done.add(stage.name)
        self.log(f"[run]  {stage.name}" + (" (resuming)" if state == "partial" else ""))
        prev = self.record(stage.name) or {}
        seconds_before = prev.get("seconds", 0.0) if state == "partial" else 0.0
        write_json(
            self._book_file(stage.name),
            {"name": stage.name, "key": key, "state": "running", "config": stage.config, "seconds": seconds_before},
        )
        return key, state, seconds_before

    def _finish(self, stage: Stage, key: str, seconds: float, started: float, world_size: int) -> None:
        write_json(
            self._book_file(stage.name),
            {
                "name": stage.name,
                "key": key,
                "token": secrets.token_hex(4),
                "state": "done",
                "config": stage.config,
                "output": str(stage.output.relative_to(self.run_dir) if stage.output.is_relative_to(self.run_dir) else stage.output),
                "seconds": round(seconds, 3),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "started": round(started, 3),
                "finished": round(time.time(), 3),
                "host": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "device": resolved_device(stage.device),  # what "auto" turned out to be here
                    "device_asked": stage.device,
                    "world_size": world_size,
                },
            },
        )

    def table(self, stages: list[Stage]) -> list[dict[str, Any]]:
        """Status rows (name, state, seconds, output) for ``stages`` in order.

        The state of a stage whose upstream is not done is reported from its record alone.
        """
        rows = []
        for st in stages:
            rec = self.record(st.name) or {}
            ready = all(self.fingerprint(d) is not None for d in st.deps)
            state = self.state(st) if ready else ("waiting" if not rec else rec.get("state", "todo"))
            rows.append({"stage": st.name, "state": state, "seconds": rec.get("seconds"), "output": str(st.output)})
        return rows
