"""Writing one finished step: its statistic blocks, the loop's clip calls, learning rates, step time.

Everything here waits on the device in the Monitor's ``PendingWriter`` until the next
commit, which is due every ``commit_every`` steps or ``commit_seconds`` seconds; the
commit's own time counts against the overhead budget (``monitor._budget``).
"""

from __future__ import annotations

import time
from typing import Any

from . import clip_watch
from ._budget import ALWAYS


def record_step(monitor: Any, step: int, skipped: bool) -> None:
    """Hand a finished step's measurements and scalars to ``monitor``'s pending writer.

    Args:
        monitor: the :class:`~graddoctor.Monitor` (its probes, pending writer, optimizer).
        step: the step that finished.
        skipped: the optimizer did not step (GradScaler found inf/NaN): the update is 0.
    """
    pending, probes = monitor._pending, monitor.probes
    if monitor.writer.commit_due():  # commit complete steps, with what log() added to them
        probes.budget.timed(ALWAYS, monitor.flush)
    monitor.writer.mark_step(step)  # then the parameters: a sharded step's collective, every rank
    parameters = probes.parameter_block(skipped)
    modules, times = probes.module_block()
    pending.add_step(step, parameters, modules, times, probes.activations.execution_order)
    for name, value in clip_watch.clip_scalars(monitor._clips).items():
        pending.scalar(step, name, value)
    if monitor.optimizer is not None:
        for i, group in enumerate(monitor.optimizer.param_groups):
            monitor.failsafe.run(("lr",), pending.scalar, step, f"lr/{i}", group.get("lr"))
    now = time.perf_counter()
    pending.scalar(step, "time/step", now - monitor._step_clock)
    monitor._step_clock = now


__all__ = ["record_step"]
