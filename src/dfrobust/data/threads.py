"""Torch threading for the data generators."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run the block with one intra-op torch thread, then restore the previous setting.

    The generators run many small tensor operations; with several threads each one pays a
    synchronisation that, on a busy machine, costs more than the work. One thread also makes
    the floating-point reductions, and so the pixels, independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
