"""The Monitor: owns the hooks and the schedule, and writes what the probes measure to a run file.

Usage::

    with Monitor(model, optimizer, path="runs/exp1.gdr") as mon:
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)

Gradients are read in the optimizer's step pre-hook (after GradScaler's unscale and
before any clipping an optimizer wrapper does), weights and updates in the post-hook.
Statistics stay on the device until the writer commits a batch of steps: then every
pending vector and tensor scalar goes to the host in a single transfer.

Under ``torch.distributed`` a DDP model is measured on rank 0 only, an FSDP model on
every rank's shards reduced to global values, and rank 0 writes the run file, named as
the plain model (see ``monitor.distributed``). With ``scaler=`` (a GradScaler) every
step records ``amp_scale``, and a step it skips is recorded with ``amp_skipped = 1``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._paths import timestamped_run_path
from ..probes._wrappers import unwrap_model
from ..probes.activations import ActivationProbe, select_modules
from ..probes.parameters import ParameterProbe, trainable_parameters
from ..store import Run, open_run
from ._pending import PendingWriter, run_header
from ._step import StepMeasurements
from .amp import ScalerWatch, amp_attributes, check_scaler
from .distributed import detect_layout
from .schedules import Schedule, as_schedule


def default_run_path(folder: str | os.PathLike = "runs") -> Path:
    """``runs/run-YYYYmmdd-HHMMSS-ffffff.gdr``."""
    return timestamped_run_path(folder)


class Monitor:
    """Records per-layer gradient, weight, update and activation statistics to a run file.

    Args:
        model: the model to watch (it is never modified; every hook is removed on close).
            A DDP / FSDP / ``torch.compile`` wrapper is fine: names are the plain model's.
        optimizer: its ``step()`` marks a training step. Without one, call ``mon.step()``
            after ``backward()``.
        path: the ``.gdr`` run file (default ``runs/run-<time>.gdr``).
        every: schedule of parameter statistics (int n = every n steps, or ``step -> bool``).
        activations_every: schedule of module statistics (forward/backward hooks).
        modules: ``"leaf"`` (default), ``"all"`` or glob patterns of module names.
        track_updates: measure the optimizer's update (keeps one copy of the weights).
        config: JSON-serialisable user configuration stored with the run.
        commit_every, commit_seconds: commit the run file every N steps or T seconds.
        overwrite: replace an existing run file.
        scaler: the ``torch.amp.GradScaler`` of the loop: records ``amp_scale`` every step
            and the steps it skips (``amp_skipped``), which the optimizer never sees.
        distributed: ``"auto"`` (detect DDP / FSDP once ``torch.distributed`` is
            initialised), ``"replicated"``, ``"sharded"``, or ``"off"`` (every process
            records its own run; give each its own path).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        path: str | os.PathLike | None = None,
        *,
        every: int | Schedule = 1,
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        track_updates: bool = True,
        config: dict[str, Any] | None = None,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
        scaler: Any = None,
        distributed: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Monitor needs a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        if scaler is not None:
            check_scaler(scaler)
        inner = unwrap_model(model)
        names, params, frozen = trainable_parameters(inner)
        if not params:
            raise ValueError(
                f"{type(inner).__name__} has no trainable parameters (none with requires_grad): "
                "there are no gradients to monitor"
            )
        self.layout = detect_layout(model, params, names, distributed)
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.parameter_names = names
        self._track_updates = track_updates
        self.probes = StepMeasurements(
            ParameterProbe(params, track_updates=track_updates and optimizer is not None),
            ActivationProbe(select_modules(inner, modules)),
            as_schedule(every),
            as_schedule(activations_every),
            self.layout,
        )
        self.device = params[0].device
        self.path = Path(path) if path is not None else default_run_path()
        # on a rank that does not record: no file, nothing written
        options = {
            "commit_every": commit_every,
            "commit_seconds": commit_seconds,
            "overwrite": overwrite,
        }
        self._pending = PendingWriter(self.path, self.layout.recording, **options)
        self.writer = self._pending.writer
        header = run_header(inner, frozen, self.device, optimizer, scaler, self.layout, config)
        self._pending.start(header, names, self.probes.activations.names)
        self.step_index = 0
        self._found_inf: torch.Tensor | None = None
        self._step_clock = time.perf_counter()
        self._handles: list[Any] = []
        self.closed = False
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._on_pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._on_post_step))
        if scaler is not None:
            self._handles.append(ScalerWatch(scaler, self._on_scaler_step))
        self.probes.arm(self.step_index, self.recording)

    @property
    def recording(self) -> bool:
        """Whether this process writes the run file (False on ranks other than 0 under DDP/FSDP)."""
        return self.layout.recording

    # -- the step --------------------------------------------------------------------
    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # a grad_scale: a self-unscaling (fused) optimizer stepped by GradScaler
        self._found_inf, grad_scale = amp_attributes(optimizer)
        self.probes.before_update(self.step_index, grad_scale=grad_scale)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._finish_step()

    def step(self) -> None:
        """Record the current gradients as one step (for training loops without an optimizer)."""
        self._check_manual()
        self.probes.before_update(self.step_index)
        self._finish_step()

    def before_step(self) -> None:
        """Measure gradients and snapshot weights now (manual mode, e.g. a framework callback
        that sees unscaled, unclipped gradients before its own clipping)."""
        self._check_manual()
        self.probes.params.track_updates = self._track_updates
        self.probes.before_update(self.step_index)

    def after_step(self) -> None:
        """Measure weights and updates after the optimizer step and close the step (manual mode)."""
        self._check_manual()
        self._finish_step()

    def _check_manual(self) -> None:
        self._check_open()
        if self.optimizer is not None:
            raise RuntimeError(
                "this Monitor follows optimizer.step() through hooks: to call step(), before_step() or "
                "after_step() yourself, create it without an optimizer"
            )

    def _finish_step(self, skipped: bool = False) -> None:
        step = self.step_index
        if self.layout.measuring:
            self._record_step(step, skipped)
        self.step_index += 1
        self.probes.arm(self.step_index, self.recording)

    def _record_step(self, step: int, skipped: bool) -> None:
        if self.writer.commit_due():  # commit complete steps, with what log() added to them
            self.flush()
        self.writer.mark_step(step)
        # sharded parameters: the step's collective, on every rank
        parameters = self.probes.parameter_block(skipped)
        modules, times = self.probes.module_block()
        self._pending.add_step(
            step, parameters, modules, times, self.probes.activations.execution_order
        )
        if self.optimizer is not None:
            for i, group in enumerate(self.optimizer.param_groups):
                self._pending.scalar(step, f"lr/{i}", group.get("lr"))
        now = time.perf_counter()
        self._pending.scalar(step, "time/step", now - self._step_clock)
        self._step_clock = now

    def _on_scaler_step(self, optimizer: torch.optim.Optimizer, stepped: bool, scale: Any) -> None:
        """After ``scaler.step(optimizer)``: record the scale, and a step the scaler skipped."""
        if self.closed:
            return
        if self.optimizer is None:  # manual mode: the framework closes the step with after_step()
            self._pending.amp_scalars(self.step_index, scale, 0.0 if stepped else 1.0)
        elif optimizer is not self.optimizer:
            return
        elif stepped:
            found_inf, self._found_inf = self._found_inf, None
            skipped = 0.0 if found_inf is None else (found_inf > 0).float()
            self._pending.amp_scalars(self.step_index - 1, scale, skipped)
        else:  # no optimizer hook fired: record the gradients as they are (unscaled, inf/NaN)
            step = self.step_index
            self.probes.before_update(step, snapshot=False)
            self._finish_step(skipped=True)
            self._pending.amp_scalars(step, scale, 1.0)

    # -- scalars ---------------------------------------------------------------------
    def log(self, step: int | None = None, **scalars: float | torch.Tensor) -> None:
        """Record scalars (loss, accuracy...) for the last completed step.

        Args:
            step: the step to attach them to (default: the step ``optimizer.step()`` just
                finished, or step 0 before any).
            **scalars: floats or 0-d tensors (tensors are moved to the host with the next
                batch, not now). Ignored on ranks that do not record.
        """
        self._check_open()
        target = max(self.step_index - 1, 0) if step is None else int(step)
        for name, value in scalars.items():
            self._pending.scalar(target, name, value)

    def flush(self) -> None:
        """Move pending statistics to the host (one transfer) and commit them to the run file."""
        self._pending.flush()

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        """Flush, remove every hook, free the weight copy and close the run file."""
        if self.closed:
            return
        try:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self.probes.release()
            self.flush()
        finally:
            self.writer.close()
            self.closed = True

    def run(self) -> Run:
        """Flush and open the run file for reading (on the recording rank)."""
        if not self.recording:
            raise RuntimeError(
                f"rank {self.layout.rank} records nothing: rank 0 writes {self.path}; "
                "open it there (check mon.recording first)"
            )
        if not self.closed:
            self.flush()
        return open_run(self.path)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"this Monitor is closed; its run is in {self.path}")

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not self.closed:
            try:
                self.writer.add_event(
                    self.step_index, "exception", {"type": exc_type.__name__, "message": str(exc)}
                )
            except Exception:  # recording the crash must never hide it
                pass
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"step {self.step_index}"
        return f"Monitor({str(self.path)!r}, {state})"


__all__ = ["Monitor", "default_run_path"]
