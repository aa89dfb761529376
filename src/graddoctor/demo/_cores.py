"""How much of the machine the demo takes: the cores the load average leaves idle.

The demo's models are small: one torch thread trains them about as fast as two, and more
threads than idle cores make every thread wait for the others (OpenMP threads spin at
each kernel's barrier), which slowed the demo more than tenfold on a busy machine. So
the demo trains on as many threads as there are idle cores, at most torch's setting, and
when a second core is idle it draws the report pages there (:mod:`._pages`) while the
next scenario trains on the first.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


def idle_cores() -> int:
    """Cores this process may run on less the one-minute load average (rounded), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Unix
        busy = 0.0
    return max(1, cores - math.floor(busy + 0.5))


@dataclass(frozen=True)
class CorePlan:
    """Torch threads for training, and whether report pages are drawn in a second process."""

    threads: int
    background_pages: bool

    @classmethod
    def for_idle_cores(
        cls, threads: int | None = None, background_pages: bool | None = None
    ) -> CorePlan:
        """The plan for the cores idle now; ``threads``/``background_pages`` given win.

        Two idle cores or more: pages in the background, training on the rest (at most
        torch's setting); one: everything on it, one thread.
        """
        idle = idle_cores()
        background = idle >= 2 if background_pages is None else background_pages
        chosen = min(torch.get_num_threads(), idle - background) if threads is None else threads
        return cls(max(1, chosen), background)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run torch with ``threads`` intra-op threads; its setting is restored on exit.

    Yields:
        ``threads``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield max(1, threads)
    finally:
        torch.set_num_threads(before)
