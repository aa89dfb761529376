"""Timing the Monitor's own work without a host sync: ``perf_counter`` on the host, CUDA events on a GPU.

A :class:`Clock` brackets a piece of work (``start()`` ... ``stop(token, what)``) and says,
when asked, how long the finished pieces took, by what. On CPU the work is timed where it
runs. On CUDA the work is queued on a stream: each bracket records two events and
:meth:`Clock.collect` reads only the pairs the device has finished (``Event.query()``),
leaving the others for a later call, so timing never waits for the device.
"""

from __future__ import annotations

import time
from typing import Any

import torch


class Clock:
    """Host time (``time.perf_counter``) of bracketed work, by what it was.

    Args:
        sampled: what is also kept piece by piece (:meth:`samples`), not only summed: the
            steps, whose median is the step time a pause (evaluation, checkpointing) does
            not inflate.
    """

    def __init__(self, sampled: tuple[str, ...] = ("step",)) -> None:
        self._spent: dict[str, float] = {}
        self._sampled = sampled
        self._samples: dict[str, list[float]] = {}

    def start(self) -> Any:
        """A token for :meth:`stop`: the moment the work starts."""
        return time.perf_counter()

    def stop(self, token: Any, what: str) -> None:
        """The work started at ``token`` ends now; add its duration to ``what``."""
        self._add(what, time.perf_counter() - token)

    def _add(self, what: str, seconds: float) -> None:
        self._spent[what] = self._spent.get(what, 0.0) + seconds
        if what in self._sampled:
            self._samples.setdefault(what, []).append(seconds)

    def collect(self) -> dict[str, float]:
        """Seconds spent by what, since the last call."""
        spent, self._spent = self._spent, {}
        return spent

    def samples(self) -> dict[str, list[float]]:
        """The durations of each sampled piece of work finished since the last call."""
        samples, self._samples = self._samples, {}
        return samples


class CudaClock(Clock):
    """Device time of bracketed work from CUDA events, read once the device has passed them.

    Args:
        device: the CUDA device whose current stream the work runs on.
    """

    def __init__(self, device: torch.device, sampled: tuple[str, ...] = ("step",)) -> None:
        super().__init__(sampled)
        self.device = device
        self._open: list[tuple[str, Any, Any]] = []  # (what, start event, end event)
        self._free: list[Any] = []  # events whose times were read, for reuse

    def _event(self) -> Any:
        event = self._free.pop() if self._free else torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def start(self) -> Any:
        return self._event()

    def stop(self, token: Any, what: str) -> None:
        self._open.append((what, token, self._event()))

    def collect(self) -> dict[str, float]:
        still_open = []
        for what, start, end in self._open:
            if end.query():  # the device passed both events: no wait
                self._add(what, start.elapsed_time(end) / 1000.0)
                self._free += [start, end]
            else:
                still_open.append((what, start, end))
        self._open = still_open
        return super().collect()


def clock_for(device: torch.device) -> Clock:
    """The clock of work on ``device``: CUDA events on a GPU, host time elsewhere."""
    return CudaClock(device) if device.type == "cuda" else Clock()


__all__ = ["Clock", "CudaClock", "clock_for"]
