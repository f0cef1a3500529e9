"""The sharded part store: finished units of a stage on disk, a fixed seeded assignment of units to ranks.

A stage that works through a list of images in a fixed global order (the attack stage, the DIP
study) cuts it into *units* of ``unit_size`` consecutive images (unit ``k`` holds positions
``k * unit_size ..``), the same units whatever the number of processes, so a unit's rows do not
depend on how the work was shared. Each finished unit leaves its payload files
(``parts/part-00003.csv``, ``.safetensors``, ...: the stage writes them) and then, last, its
completion mark ``parts/part-00003.json`` with the run's fingerprint, the unit's place in the
global order, the rank that did it and the world size. A unit counts as done only when its mark
carries this run's fingerprint and its payloads are present, so a process killed mid-unit
leaves nothing that counts, and parts of another configuration are redone.

Assignment (:func:`assign`): a seeded permutation of the unit indices, dealt round robin, so
rank ``r`` of ``N`` gets the units at positions ``r, r + N, r + 2N, ...`` of
``randperm(n_units, seed)``. Every unit has exactly one rank, the ranks' shares differ by at
most one unit, and neighbouring units (often alike in cost: all fakes first) are spread over
the ranks. Nothing is padded: unlike ``DistributedSampler``, no image is processed twice.

:meth:`PartStore.merge` reads the payloads of every unit in unit order, which is the global
order, so merged outputs are identical row for row to a one-process run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from dfrobust.errors import DfrobustError
from dfrobust.utils.io import JSONFileError, read_json, write_json

T = TypeVar("T")

#: File name stem of unit ``k``'s files under the part folder.
PART_NAME = "part-{:05d}"


@dataclass(frozen=True)
class Unit:
    """Positions ``start .. stop - 1`` of the global order, the ``index``-th unit."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of images in the unit."""
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        """The unit's positions as a slice of the global order."""
        return slice(self.start, self.stop)


def plan_units(n_items: int, unit_size: int) -> list[Unit]:
    """``n_items`` positions cut into units of ``unit_size`` (the last one may be shorter)."""
    if unit_size < 1:
        raise DfrobustError(f"a unit needs at least one image, got unit size {unit_size}")
    return [Unit(k, s, min(s + unit_size, n_items)) for k, s in enumerate(range(0, n_items, unit_size))]


def assign(n_units: int, world_size: int, seed: int = 0) -> list[int]:
    """The rank of every unit: a seeded permutation of the units dealt round robin over ``world_size`` ranks."""
    if world_size < 1:
        raise DfrobustError(f"world size must be at least 1, got {world_size}")
    order = torch.randperm(n_units, generator=torch.Generator().manual_seed(int(seed))).tolist()
    ranks = [0] * n_units
    for position, unit in enumerate(order):
        ranks[unit] = position % world_size
    return ranks


class PartStore:
    """Finished units of one run (one fingerprint) under ``folder``.

    Args:
        folder: the part folder (``OUT/parts``).
        fingerprint: what the run's results depend on; marks of other fingerprints do not count.
        n_items: images in the global order.
        unit_size: images per unit.
        seed: seed of the assignment of units to ranks.
        payloads: file suffixes the stage writes per unit (``(".csv",)``); a unit whose payload is
            missing is not done.
    """

    def __init__(self, folder: str | Path, fingerprint: str, n_items: int, unit_size: int, seed: int = 0,
                 payloads: Sequence[str] = ()) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.units = plan_units(n_items, unit_size)
        self.unit_size = unit_size
        self.seed = seed
        self.payloads = tuple(payloads)

    def path(self, unit: Unit, suffix: str) -> Path:
        """The file of ``unit`` with ``suffix`` (``".csv"``, ``".safetensors"``; ``".json"`` is the mark)."""
        return self.folder / (PART_NAME.format(unit.index) + suffix)

    def mark_path(self, unit: Unit) -> Path:
        """The completion mark of ``unit``."""
        return self.path(unit, ".json")

    def read_mark(self, unit: Unit) -> dict[str, Any] | None:
        """The mark of ``unit`` as written (any fingerprint), ``None`` when absent or damaged."""
        try:
            mark = read_json(self.mark_path(unit))
        except (OSError, JSONFileError, ValueError):
            return None
        return mark if isinstance(mark, dict) else None

    def mark(self, unit: Unit) -> dict[str, Any] | None:
        """The mark of ``unit`` if the unit is done under this fingerprint, else ``None``."""
        mark = self.read_mark(unit)
        if mark is None or mark.get("fingerprint") != self.fingerprint:
            return None
        if (mark.get("start"), mark.get("stop")) != (unit.start, unit.stop):
            return None  # written with another unit size
        if not all(self.path(unit, s).is_file() for s in self.payloads):
            return None
        return mark

    def is_done(self, unit: Unit) -> bool:
        """Whether ``unit`` is finished under this fingerprint."""
        return self.mark(unit) is not None

    def done(self) -> list[Unit]:
        """Finished units, in order."""
        return [u for u in self.units if self.is_done(u)]

    def missing(self) -> list[Unit]:
        """Units still to do, in order."""
        return [u for u in self.units if not self.is_done(u)]

    def complete(self) -> bool:
        """Whether every unit is done."""
        return all(self.is_done(u) for u in self.units)

    def mine(self, rank: int, world_size: int) -> list[Unit]:
        """The units :func:`assign` gives to ``rank`` of ``world_size``, in order."""
        owners = assign(len(self.units), world_size, self.seed)
        return [u for u in self.units if owners[u.index] == rank]

    def todo(self, rank: int, world_size: int) -> list[Unit]:
        """``rank``'s units that are not done yet."""
        return [u for u in self.mine(rank, world_size) if not self.is_done(u)]

    def finish(self, unit: Unit, rank: int = 0, world_size: int = 1, **info: Any) -> Path:
        """Write ``unit``'s completion mark (after its payloads): fingerprint, place, rank, world size, ``info``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mark = {
            "fingerprint": self.fingerprint,
            "unit": unit.index,
            "start": unit.start,
            "stop": unit.stop,
            "images": unit.size,
            "rank": rank,
            "world_size": world_size,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **info,
        }
        return write_json(self.mark_path(unit), mark)

    def ranks(self) -> list[dict[str, int]]:
        """``[{"rank", "world_size", "images"}]``: the images of the finished units each rank did.

        One entry per rank of each world size that wrote parts (a run resumed with another number
        of processes has entries of both); the images add up to the finished units' images.
        """
        counts: dict[tuple[int, int], int] = {}
        for unit in self.units:
            mark = self.mark(unit)
            if mark is not None:
                key = (int(mark.get("world_size", 1)), int(mark["rank"]))
                counts[key] = counts.get(key, 0) + unit.size
        return [{"rank": r, "world_size": w, "images": n} for (w, r), n in sorted(counts.items())]

    def merge(self, read: Callable[[Unit], list[T]]) -> list[T]:
        """Every unit's rows in the global order (``read(unit)`` gives one unit's rows); an error if a unit is missing."""
        missing = self.missing()
        if missing:
            raise DfrobustError(
                f"{len(missing)} part(s) of {self.folder} are missing (first: unit {missing[0].index}); rerun to finish them"
            )
        return [row for unit in self.units for row in read(unit)]
