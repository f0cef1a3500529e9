"""Many processes: torchrun's environment, the process group, the device of each rank, barriers.

Every command runs the same under ``torchrun --nproc_per_node N [--nnodes M ...] -m dfrobust
COMMAND ...``: :func:`setup` reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE``; when ``WORLD_SIZE > 1`` it starts the default process group once per
process (NCCL when the rank computes on CUDA, gloo on the CPU) and makes ``cuda:LOCAL_RANK`` the
current CUDA device, so ``--device auto`` and ``--device cuda`` of rank ``r`` mean its own GPU.
Without torchrun (no ``WORLD_SIZE``) everything is one process and nothing is started.

Who merges the parts of a sharded stage (:func:`merge_once`):

* under torchrun (a process group): every rank finishes its own units, all meet at a barrier,
  rank 0 merges, all meet again, and every rank returns the merged result (so the next stage
  of ``reproduce`` can read it on any rank);
* with explicit ``--rank/--world-size`` flags (separate processes, no group): the rank that
  finds every part present merges, i.e. the last one to finish. Each rank writes its parts
  before it looks, so at least one of them sees them all; two that finish together both merge
  the same rows (every file is written atomically).

The barriers wait as long as :data:`TIMEOUT` (``DFROBUST_DIST_TIMEOUT`` seconds): one rank may
still be purifying its last batch while the others wait, and torchrun stops every rank when
one of them fails.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dfrobust.errors import DfrobustError
from dfrobust.utils.runtime import resolve_device

T = TypeVar("T")

#: How long a barrier or collective waits for the other ranks (a rank may still be working on its last unit).
TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("DFROBUST_DIST_TIMEOUT", 24 * 3600)))


@dataclass(frozen=True)
class Context:
    """Where this process stands among the processes of one run.

    Attributes:
        rank: this process's rank, ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this node (its GPU index under torchrun).
        local_world_size: processes on this node.
        group: whether a process group is up (torchrun with ``WORLD_SIZE > 1``); without one,
            the ranks are separate runs that meet only through their part files.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes checkpoints and merges under a group."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """More than one process shares the work."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise DfrobustError(f"${name} is {value!r}, not a whole number; unset it or run under torchrun") from None


def env_context() -> Context:
    """The context torchrun's environment describes (nothing is started)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise DfrobustError(f"$RANK {rank} is not in 0..{world - 1} ($WORLD_SIZE {world}); start the processes with torchrun")
    return Context(rank, world, local, local_world, group=world > 1 and dist.is_available() and dist.is_initialized())


def _wants_cuda(device: str | torch.device) -> bool:
    name = str(device)
    return torch.cuda.is_available() and (name == "auto" or name.startswith("cuda"))


def setup(device: str | torch.device = "auto") -> Context:
    """Read torchrun's environment and, when ``WORLD_SIZE > 1``, start the process group (once).

    ``device`` is the device the ranks will compute on: NCCL serves CUDA ranks, gloo CPU ones.
    On CUDA the current device becomes ``cuda:LOCAL_RANK`` (modulo the visible GPUs).
    """
    ctx = env_context()
    if not ctx.sharded:
        return ctx
    if not dist.is_available():
        raise DfrobustError("this PyTorch build has no torch.distributed; run one process, or install a build with it")
    cuda = _wants_cuda(device)
    if cuda:
        torch.cuda.set_device(ctx.local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise DfrobustError(
                "WORLD_SIZE > 1 but MASTER_ADDR is not set; start the processes with torchrun (or pass --rank/--world-size)"
            )
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        atexit.register(_teardown)
    return Context(ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size, group=True)


def _teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(rank: int | None = None, world_size: int | None = None, device: str | torch.device = "auto") -> Context:
    """This process's shard: explicit ``rank``/``world_size`` (separate runs, no group) or torchrun's (:func:`setup`)."""
    if rank is None and world_size is None:
        return setup(device)
    world_size = 1 if world_size is None else int(world_size)
    rank = 0 if rank is None else int(rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DfrobustError(f"rank {rank} is outside 0..{world_size - 1} (--rank must be below --world-size)")
    return Context(rank, world_size, rank, world_size, group=False)


def device_for(name: str | torch.device, ctx: Context) -> torch.device:
    """The device of this rank: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under a group, else :func:`resolve_device`."""
    if ctx.group and _wants_cuda(name) and str(name) in ("auto", "cuda"):
        return torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
    return resolve_device(name)


def barrier(ctx: Context) -> None:
    """Wait for every rank (nothing without a group)."""
    if ctx.group:
        dist.barrier()


def all_gather(obj: T, ctx: Context) -> list[T]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a group); ``obj`` must be picklable plain data."""
    if not ctx.group:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, ctx: Context, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a group)."""
    if not ctx.group:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks, in place (unchanged without a group)."""
    if ctx.group:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def merge_once(ctx: Context, complete: Callable[[], bool], merge: Callable[[], T], read: Callable[[], T | None]) -> T | None:
    """Merge the parts of a sharded stage once (see the module docstring for who merges).

    Args:
        ctx: this process's shard.
        complete: whether every part is present.
        merge: writes the merged outputs and returns the result.
        read: the merged result as written (for the ranks that did not merge), ``None`` if absent.

    Returns:
        The merged result, or ``None`` when parts are still missing (a rank of a run without a
        group that is not the last, or a run whose ranks did not all finish).
    """
    if not ctx.group:
        return merge() if complete() else None
    barrier(ctx)
    result: T | None = None
    failed = ""
    if ctx.is_main:
        try:
            result = merge() if complete() else None
        except Exception as exc:  # tell the other ranks, which would otherwise wait at the barrier
            failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            broadcast(failed, ctx)
    else:
        failed = broadcast(failed, ctx)
        if failed:
            raise DfrobustError(f"rank 0 failed to merge the parts ({failed})")
        result = read()
    return result
