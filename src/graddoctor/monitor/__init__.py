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
* ``guard``: the training ``Guard`` (skip, clip, roll back; ``_verdict``, ``_snapshots``, ``_guarded_step``).
"""

from ..probes.structure import model_summary
from ._monitor import Monitor, default_run_path
from .guard import Guard, GuardGaveUp

__all__ = ["Guard", "GuardGaveUp", "Monitor", "default_run_path", "model_summary"]
