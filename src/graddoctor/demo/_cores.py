"""How much of the machine the demo takes: its threads from the cores nothing else uses.

The demo's models are small: one torch thread trains them about as fast as two, and more
threads than idle cores make every thread wait for the others (OpenMP threads spin at
each kernel's barrier), which slowed the demo more than tenfold on a busy machine. So
the demo measures the idle cores when it starts (:func:`idle_cores`), trains on half of
them but one (:class:`CorePlan`, at least one thread), restores torch's setting
afterwards (:func:`torch_threads`), and draws the report pages in a second process
(:mod:`._pages`) while the next scenario trains.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch


def _busy_cores(window: float) -> float | None:
    """Cores of the machine busy over the next ``window`` seconds (this process sleeps
    meanwhile), from ``/proc/stat``; None where it cannot be read."""

    def times() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    try:
        total, idle = times()
        time.sleep(window)
        total_after, idle_after = times()
    except (OSError, ValueError, IndexError):  # not Linux
        return None
    if total_after <= total:
        return None
    return (1 - (idle_after - idle) / (total_after - total)) * (os.cpu_count() or 1)


def allowed_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cores(window: float = 0.3) -> int:
    """Cores this process may run on that nothing else is using, at least 1.

    Measured over ``window`` seconds where the kernel says (Linux ``/proc/stat``): the
    one-minute load average lags a minute behind, so it still counts a job that just
    ended; elsewhere it is what is at hand.
    """
    cores = allowed_cores()
    busy = _busy_cores(window)
    if busy is None:
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

        The pages are drawn in a second process whenever this one may use two cores: a
        process of its own never waits for another at a barrier, so even on a busy machine
        it only takes its share. Training gets half of the idle cores but one (at least one
        thread, at most torch's setting): the headroom is for work that starts later, since
        one thread waiting for a busy core stalls the others at every kernel (measured: two
        threads on two cores that others began to use cost seven times the CPU of one).
        """
        background = allowed_cores() >= 2 if background_pages is None else background_pages
        if threads is None:
            threads = min(torch.get_num_threads(), (idle_cores() - 1) // 2)
        return cls(max(1, threads), background)


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
