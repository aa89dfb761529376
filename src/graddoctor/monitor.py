"""Monitor: owns the hooks and the schedule, and writes what the probes measure to a run file.

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

Under ``torch.distributed`` (see ``graddoctor.integrations.distributed``) a DDP model is
measured on rank 0 only (its gradients are already averaged; other ranks write nothing
and never block), an FSDP model on every rank's shards with one all-reduce (SUM) of
stacked squared norms and counts, and one (MAX) of max-norms, per recorded step; only
rank 0 writes the run file. Names are the plain model's (DDP's ``module.``
prefix is stripped), so a distributed run compares column by column with a single-process
one. With ``scaler=`` (a ``torch.amp.GradScaler``) every step records ``amp_scale``, and a
step the scaler skips for inf/NaN gradients is still recorded, with ``amp_skipped = 1``.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._paths import timestamped_run_path
from ._version import __version__
from .integrations.amp import ScalerWatch, amp_attributes, check_scaler
from .integrations.distributed import NullWriter, detect_layout, reduce_parameter_stats
from .probes._wrappers import unwrap_model
from .probes.activations import ACTIVATION_STATS, ActivationProbe, select_modules
from .probes.parameters import GRAD_STATS, PARAMETER_STATS, ParameterProbe, trainable_parameters
from .probes.structure import model_summary
from .schedules import Schedule, as_schedule
from .store import Run, RunWriter, open_run

PARAMETERS = "parameters"
MODULES = "modules"


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
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
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
        self.param_schedule = as_schedule(every)
        self.activation_schedule = as_schedule(activations_every)
        self.parameter_names = names
        self._track_updates = track_updates
        self.params = ParameterProbe(params, track_updates=track_updates and optimizer is not None)
        self.activations = ActivationProbe(select_modules(inner, modules))
        self.device = params[0].device
        self.path = Path(path) if path is not None else default_run_path()
        if self.layout.recording:
            self.writer = RunWriter(self.path, commit_every=commit_every, commit_seconds=commit_seconds,
                                    overwrite=overwrite)
        else:  # another rank records: no file, nothing written
            self.writer = NullWriter(self.path)
        self.writer.set_meta(
            {
                "graddoctor_version": __version__,
                "torch_version": torch.__version__,
                "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "config": config or {},
                "model": model_summary(inner),
                "frozen_parameters": frozen,
                "device": str(self.device),
                "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                "distributed": self.layout.to_meta(),
                "amp_scaler": type(scaler).__name__ if scaler is not None else None,
            }
        )
        self.writer.define_group(PARAMETERS, names)
        self.writer.define_stats(PARAMETERS, PARAMETER_STATS)
        self.writer.define_group(MODULES, self.activations.names)
        self.writer.define_stats(MODULES, ACTIVATION_STATS)
        self.step_index = 0
        self._pending: list[tuple[int, str, str, torch.Tensor]] = []  # (step, kind, name, tensor)
        self._grads: torch.Tensor | None = None
        self._module_stats: torch.Tensor | None = None
        self._time_grads: dict[str, torch.Tensor] = {}
        self._found_inf: torch.Tensor | None = None
        self._step_clock = time.perf_counter()
        self._order_saved = False
        self._handles: list[Any] = []
        self.closed = False
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._on_pre_step))
            self._handles.append(optimizer.register_step_post_hook(self._on_post_step))
        if scaler is not None:
            self._handles.append(ScalerWatch(scaler, self._on_scaler_step))
        self._arm_activations()

    @property
    def recording(self) -> bool:
        """Whether this process writes the run file (False on ranks other than 0 under DDP/FSDP)."""
        return self.layout.recording

    # -- the step --------------------------------------------------------------------
    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._found_inf, grad_scale = amp_attributes(optimizer)
        self._measure_before_update()
        if grad_scale is not None and self._grads is not None:  # a self-unscaling (fused) optimizer
            self._grads[:2] /= grad_scale.to(self._grads.device, torch.float32)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._finish_step()

    def _measure_before_update(self, snapshot: bool = True) -> None:
        if not self.layout.measuring:
            return
        if self.param_schedule(self.step_index):
            self._grads = self.params.measure_grads()
            if snapshot:
                self.params.snapshot()
        if self.activations.installed:
            self.activations.remove()
            self._module_stats = self.activations.collect(self.device)
            self._time_grads = self.activations.time_gradients()

    def step(self) -> None:
        """Record the current gradients as one step (for training loops without an optimizer)."""
        self._check_manual()
        self._measure_before_update()
        self._finish_step()

    def before_step(self) -> None:
        """Measure gradients and snapshot weights now (manual mode, e.g. a framework callback
        that sees unscaled, unclipped gradients before its own clipping)."""
        self._check_manual()
        self.params.track_updates = self._track_updates
        self._measure_before_update()

    def after_step(self) -> None:
        """Measure weights and updates after the optimizer step and close the step (manual mode)."""
        self._check_manual()
        self._finish_step()

    def _check_manual(self) -> None:
        self._check_open()
        if self.optimizer is not None:
            raise RuntimeError(
                "this Monitor follows optimizer.step() through hooks; create it without an optimizer "
                "(manual=True) to call step(), before_step() or after_step() yourself"
            )

    def _finish_step(self, skipped: bool = False) -> None:
        step = self.step_index
        if self.layout.measuring:
            self._record_step(step, skipped)
        self.step_index += 1
        self._arm_activations()

    def _record_step(self, step: int, skipped: bool) -> None:
        if self.writer.commit_due():  # commit complete steps, with what log() added to them
            self.flush()
        self.writer.mark_step(step)
        if self._grads is not None:
            weights = self.params.measure_weights(unchanged=skipped)
            stats = torch.cat([self._grads, weights])
            # sharded parameters: the step's collective (every rank, same schedule)
            stats = reduce_parameter_stats(stats, self.params.grad_present, self.layout)
            if self.recording:
                self._pending.append((step, "stats", PARAMETERS, stats))
            self._grads = None
        if self._module_stats is not None:
            self._pending.append((step, "stats", MODULES, self._module_stats))
            self._module_stats = None
            self._save_execution_order()
        for name, per_step in self._time_grads.items():
            self._pending.append((step, "time", name, per_step))
        self._time_grads = {}
        if self.optimizer is not None:
            for i, group in enumerate(self.optimizer.param_groups):
                self._scalar(step, f"lr/{i}", group.get("lr"))
        now = time.perf_counter()
        self._scalar(step, "time/step", now - self._step_clock)
        self._step_clock = now

    def _on_scaler_step(self, optimizer: torch.optim.Optimizer, stepped: bool, scale: Any) -> None:
        """After ``scaler.step(optimizer)``: record the scale, and a step the scaler skipped."""
        if self.closed:
            return
        if self.optimizer is None:  # manual mode: the framework closes the step with after_step()
            self._amp_scalars(self.step_index, scale, 0.0 if stepped else 1.0)
        elif optimizer is not self.optimizer:
            return
        elif stepped:
            found_inf, self._found_inf = self._found_inf, None
            skipped = 0.0 if found_inf is None else (found_inf > 0).float()
            self._amp_scalars(self.step_index - 1, scale, skipped)
        else:  # no optimizer hook fired: record the gradients as they are (unscaled, inf/NaN)
            step = self.step_index
            self._measure_before_update(snapshot=False)
            self._finish_step(skipped=True)
            self._amp_scalars(step, scale, 1.0)

    def _amp_scalars(self, step: int, scale: Any, skipped: Any) -> None:
        if scale is not None:
            self._scalar(step, "amp_scale", scale)
        self._scalar(step, "amp_skipped", skipped)

    def _arm_activations(self) -> None:
        if self.recording and self.activation_schedule(self.step_index) and self.activations.modules:
            self.activations.install()

    def _save_execution_order(self) -> None:
        if not self._order_saved and self.activations.execution_order:
            self.writer.set_meta({"execution_order": self.activations.execution_order})
            self._order_saved = True

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
            self._scalar(target, name, value)

    def _scalar(self, step: int, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"scalar {name!r} must have one element, got shape {tuple(value.shape)}")
            if self.recording:
                self._pending.append((step, "scalar", name, value.detach().reshape(())))
        elif value is None:
            self.writer.add_scalar(step, name, None)
        else:
            self.writer.add_scalar(step, name, float(value))

    # -- writing ---------------------------------------------------------------------
    def flush(self) -> None:
        """Move pending statistics to the host (one transfer) and commit them to the run file."""
        if self._pending:
            flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for *_, t in self._pending]).cpu().numpy()
            offset = 0
            for step, kind, name, tensor in self._pending:
                size = tensor.numel()
                chunk = flat[offset : offset + size]
                offset += size
                if kind == "scalar":
                    self.writer.add_scalar(step, name, float(chunk[0]))
                elif kind == "time":
                    group = f"time:{name}"
                    self.writer.define_group(group, [str(t) for t in range(size)], extend=True)
                    self.writer.define_stats(group, [f"time_grad_norm:{name}"])
                    self.writer.add_stat(step, f"time_grad_norm:{name}", chunk)
                else:
                    stats = PARAMETER_STATS if name == PARAMETERS else ACTIVATION_STATS
                    rows = chunk.reshape(len(stats), -1)
                    for stat, row in zip(stats, rows, strict=True):
                        self.writer.add_stat(step, stat, row)
            self._pending = []
        self.writer.commit()

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        """Flush, remove every hook, free the weight copy and close the run file."""
        if self.closed:
            return
        try:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self.activations.remove()
            self.params.release()
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
                self.writer.add_event(self.step_index, "exception", {"type": exc_type.__name__, "message": str(exc)})
            except Exception:  # recording the crash must never hide it
                pass
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"step {self.step_index}"
        return f"Monitor({str(self.path)!r}, {state})"


__all__ = ["Monitor", "model_summary", "GRAD_STATS"]
