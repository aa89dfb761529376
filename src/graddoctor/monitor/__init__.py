"""The Monitor and what it runs on: schedules, mixed precision, distributed reduction.

* ``Monitor`` (``_monitor``): the hooks of a training loop and the run file they fill;
  ``_watched`` resolves what it watches (the optimizer's parameters, the modules),
  ``_optimizers`` follows wrapped optimizers and closures (LBFGS), ``_compiled`` says
  why a ``torch.compile``-d model gets no activation statistics, ``_step`` measures a
  step with the probes, ``_pending`` batches the device tensors and writes them in one
  transfer.
* ``schedules``: when to record (``every_n``, ``log_spaced``).
* ``amp``: the steps GradScaler skips, its loss scale, unscaling fused optimizers'
  statistics.
* ``distributed``: who records under DDP / FSDP, and global statistics from shards.
* ``live``: the step-axis findings reported while training runs (``on_finding``).
* ``guard``: the training ``Guard`` (skip, clip, roll back; ``_verdict``, ``_snapshots``,
  ``_guarded_step``); ``_guard_events`` reads its events back from a run.

The public names are imported on first use, so reading a recorded run (``show``,
``diagnose``, ``report``) imports the torch-free submodules it needs and not torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

# public name -> the module defining it, imported on first use: what reads a recorded run
# (the Guard's events, the schedule in words) imports its submodule without torch
_PUBLIC: dict[str, tuple[str, str | None]] = {
    "Guard": (".guard", "Guard"),
    "GuardGaveUp": (".guard", "GuardGaveUp"),
    "Monitor": ("._monitor", "Monitor"),
    "default_run_path": ("._monitor", "default_run_path"),
    "model_summary": ("..probes.structure", "model_summary"),
}

if TYPE_CHECKING:
    from ..probes.structure import model_summary
    from ._monitor import Monitor, default_run_path
    from .guard import Guard, GuardGaveUp


__getattr__ = lazy_getattr(__name__, globals(), _PUBLIC)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["Guard", "GuardGaveUp", "Monitor", "default_run_path", "model_summary"]
