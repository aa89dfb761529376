"""The run files of ``graddoctor run``: one Monitor per optimizer, or one for ``backward()`` steps.

Runs are named ``<script>-<time>-opt<i>.gdr`` (the i-th optimizer to step) and
``<script>-<time>-backward.gdr``; each stores the script, its arguments and how its model
was found in its ``config``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..monitor import Guard, Monitor
from ..monitor.schedules import Schedule
from ._zero_code_models import RootTracker, Watched
from ._zero_code_nonfinite import localise, nonfinite


@dataclass
class RunSettings:
    """Where runs go and what every Monitor of ``graddoctor run`` records."""

    out_dir: Path
    name: str
    stamp: str
    every: Schedule | str  # "auto": the overhead budget thins the weights
    activations_every: Schedule
    modules: str | list[str]
    config: dict[str, Any] = field(default_factory=dict)
    guard: bool = False  # each Monitor protects its optimizer with its own graddoctor.Guard()

    def start(
        self, model: torch.nn.Module, is_root: bool, optimizer: Any, suffix: str, config: dict
    ) -> Monitor:
        """A Monitor on ``model`` writing ``<name>-<stamp>-<suffix>.gdr``.

        Args:
            model, is_root: the model found (``is_root`` False: a container of roots).
            optimizer: the optimizer it follows (None: steps marked by hand).
            suffix: ``opt<i>`` or ``backward``.
            config: added to the run's ``config``.
        """
        found = "root module" if is_root else "container of modules and parameters"
        return Monitor(
            model,
            optimizer,
            path=self.out_dir / f"{self.name}-{self.stamp}-{suffix}.gdr",
            every=self.every,
            activations_every=self.activations_every,
            modules=self.modules,
            config={**self.config, **config, "model_found": found},
            guard=Guard() if self.guard and optimizer is not None else None,
        )


def close_run(
    watched: Watched,
    error: BaseException | None,
    lost: torch.Tensor | None,
    tracker: RootTracker,
    locate: bool,
) -> None:
    """Record how the script ended (its exception, the loss it died on, the NaN source), then close.

    Args:
        watched: the run.
        error: the exception that ended the script, or None.
        lost: the loss of the step the script died in, when it belongs to this run.
        tracker: the root modules and their last batches (for the replay).
        locate: replay a non-finite step not yet located.
    """
    monitor = watched.monitor
    try:
        if watched.handle is not None:
            watched.handle.remove()
        step = monitor.step_index
        if error is not None:
            if lost is not None:
                monitor.log(step=step, loss=lost)
            params = list(watched.model.parameters())
            if locate and not watched.located and nonfinite(monitor.device, lost, params):
                localise(watched, tracker, step)
            payload = {"type": type(error).__name__, "message": str(error)}
            monitor.writer.add_event(step, "exception", payload)
    except Exception as err:  # recording the crash must never hide it
        warnings.warn(
            f"graddoctor: could not record the end of {monitor.path}: {err}", stacklevel=2
        )
    finally:
        monitor.close()


def drop_run(monitor: Monitor) -> None:
    """Close a Monitor and delete its run file."""
    monitor.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{monitor.path}{suffix}").unlink(missing_ok=True)


__all__ = ["RunSettings", "close_run", "drop_run"]
