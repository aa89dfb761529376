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
before any clipping an optimizer wrapper does; with a closure, after its first call:
``monitor._optimizers``), or earlier, when the loop calls a clip function
(``monitor.clip_watch``); weights and updates in the post-hook. A compiled model gets
no activation statistics, and a warning and event saying why (``monitor._compiled``).
Nothing the Monitor measures raises into the training loop (``monitor._failsafe``).
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
from ..store import check_step
from . import clip_watch
from ._budget import AUTO
from ._compiled import ACTIVATIONS_SKIPPED, warn_skipped
from ._failsafe import MEASUREMENT_FAILED, Failsafe
from ._lifetime import Lifetime
from ._manual import ManualSteps
from ._optimizers import after_first_call, step_closure
from ._pending import PendingWriter, run_header
from ._record import record_step
from ._step import StepMeasurements
from ._watched import resolve
from .amp import ScalerWatch, amp_attributes, check_scaler, scaler_stepped
from .distributed import detect_layout
from .live import LiveFindings
from .schedules import Schedule

STEP = ("the step's statistics",)  # what a failure outside any one measurement loses


def default_run_path(folder: str | os.PathLike = "runs") -> Path:
    """``runs/run-YYYYmmdd-HHMMSS-ffffff.gdr``."""
    return timestamped_run_path(folder)


class Monitor(Lifetime, ManualSteps):
    """Records per-layer gradient, weight, update and activation statistics to a run file.

    Args:
        model: the model to watch (it is never modified; every hook is removed on close).
            A DDP / FSDP / ``torch.compile`` wrapper is fine: names are the plain model's
            (compiled: parameter statistics only, an ``activations_skipped`` event says why).
        optimizer: its ``step()`` marks a training step, and its parameters are the
            recorded columns (a GAN's two optimizers: one Monitor, one run, each). A
            wrapper holding the optimizer (``.optimizer``) is followed to it. Without
            one, call ``mon.step()`` after ``backward()``.
        path: the ``.gdr`` run file (default ``runs/run-<time>.gdr``).
        every: schedule of parameter statistics (int n = every n steps, or ``step -> bool``);
            ``"auto"``: gradient norms every step, max |g|, weights, updates as budgeted.
        activations_every: schedule of module statistics (forward/backward hooks);
            ``"auto"``: every 10 steps, or fewer as the budget allows.
        budget: the Monitor's share of the step time (0.03: 3%): over it, the ``"auto"``
            schedules thin (``monitor._budget``); None: the full schedule.
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
        guard: a :class:`~graddoctor.Guard` protecting the run (skip, clip, roll back).
        on_finding: called with each live :class:`~graddoctor.Finding` (``monitor.live``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        path: str | os.PathLike | None = None,
        *,
        every: int | Schedule | str = AUTO,
        activations_every: int | Schedule | str | None = AUTO,
        budget: float | None = 0.03,
        modules: str | list[str] = "leaf",
        track_updates: bool = True,
        config: dict[str, Any] | None = None,
        commit_every: int = 25,
        commit_seconds: float = 2.0,
        overwrite: bool = False,
        scaler: Any = None,
        distributed: str = "auto",
        guard: Any = None,
        on_finding: Any = None,
    ) -> None:
        watched = resolve(model, optimizer, modules, activations_every)
        optimizer, names = watched.optimizer, watched.names
        if scaler is not None:
            check_scaler(scaler)
        self.layout = detect_layout(model, watched.params, names, distributed)
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.parameter_names = names
        self._track_updates = track_updates
        self.failsafe = Failsafe(  # a failure is recorded too, once per statistic
            lambda names, error: self.writer.add_event(
                self.step_index, MEASUREMENT_FAILED, {"statistics": names, "error": error}
            )
        )
        self.probes = StepMeasurements.of(
            watched,
            every,
            activations_every,
            track_updates,
            self.layout,
            self.failsafe,
            budget,
            self._record_schedule,
        )
        self.device = watched.params[0].device
        self.path = Path(path) if path is not None else default_run_path()
        self.step_index = 0
        self._found_inf: torch.Tensor | None = None
        self._awaiting_closure = False
        self._clips: list[clip_watch.ClipCall] = []
        self._step_clock = time.perf_counter()
        self._handles: list[Any] = []
        self.closed = False
        header = run_header(watched, self.device, scaler, self.layout, config)  # checked first
        header["schedule"] = self.probes.budget.meta()
        self._pending = PendingWriter(
            self.path, self.layout.recording, commit_every, commit_seconds, overwrite, header
        )
        self.writer = self._pending.writer
        self.live, self.guard = LiveFindings(names, on_finding), guard
        self._pending.live = self.live
        try:  # a Monitor that fails from here leaves no file and no hook behind
            self._pending.failsafe = self.failsafe
            self._pending.start(names, self.probes.activations.names)
            if optimizer is not None:
                self._handles.append(optimizer.register_step_pre_hook(self._on_pre_step))
                self._handles.append(optimizer.register_step_post_hook(self._on_post_step))
            if guard is not None:
                self._handles.append(guard.attach(self))
            if scaler is not None:
                self._handles.append(ScalerWatch(scaler, self._on_scaler_step))
            self._arm()
            observer = clip_watch.Observer(watched.params, self._before_clip, self._after_clip)
            self._handles.append(clip_watch.watch(observer))
        except BaseException:
            self._remove_hooks()
            self.writer.discard()
            self.closed = True
            raise

    @property
    def recording(self) -> bool:
        """Whether this process writes the run file (False on ranks other than 0 under DDP/FSDP)."""
        return self.layout.recording

    # -- the step (every hook body runs guarded: nothing raises into training) ----------
    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        self._awaiting_closure = step_closure(args, kwargs) is not None
        if self._awaiting_closure:  # gradients exist once the closure has run
            return after_first_call(args, kwargs, lambda: self._begin_step(optimizer))
        self._begin_step(optimizer)

    def _begin_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._awaiting_closure = False  # grad_scale: a fused optimizer stepped by GradScaler
        self._found_inf, grad_scale = amp_attributes(optimizer)
        self.probes.before_update(self.step_index, grad_scale=grad_scale)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._awaiting_closure:  # the optimizer never called its closure
            self._awaiting_closure = False
            self.probes.before_update(self.step_index, snapshot=False)
        self._finish_step()

    def _before_clip(self) -> None:
        """The loop clips the gradients: measure this step's now (``monitor.clip_watch``)."""
        if not self.closed:
            self.probes.before_update(self.step_index)

    def _after_clip(self, call: clip_watch.ClipCall | None) -> None:
        if call is not None and not self.closed:
            self._clips.append(call)

    def _finish_step(self, skipped: bool = False) -> None:
        step = self.step_index
        if self.layout.measuring:
            self.failsafe.run(STEP, record_step, self, step, skipped)
        self._clips = []
        self.step_index += 1
        self.failsafe.run(STEP, self._arm)

    def _arm(self) -> None:
        skipped = self.probes.arm(self.step_index, self.recording)
        if skipped:  # a compiled model, at its first step scheduled for activations
            warn_skipped(skipped)
            self.writer.add_event(self.step_index, ACTIVATIONS_SKIPPED, {"reason": skipped})

    def _record_schedule(self, schedule: dict[str, Any]) -> None:
        self.failsafe.run(("the schedule",), self.writer.set_meta, {"schedule": schedule})

    def _on_scaler_step(self, optimizer: torch.optim.Optimizer, stepped: bool, scale: Any) -> None:
        """After ``scaler.step(optimizer)``: record the scale, and a step the scaler skipped."""
        if not self.closed:
            self.failsafe.run(STEP, scaler_stepped, self, optimizer, stepped, scale)

    # -- scalars ---------------------------------------------------------------------
    def log(self, step: int | None = None, **scalars: float | torch.Tensor) -> None:
        """Record scalars (loss, accuracy...) for the last completed step.

        Values are recorded as given. Under gradient accumulation log the step's loss
        (e.g. the mean over its micro-batches), not the last micro-batch's; with a closure
        (LBFGS) ``optimizer.step(closure)`` returns the loss at the step's start.

        Args:
            step: the step to attach them to (default: the step ``optimizer.step()`` just
                finished, or step 0 before any).
            **scalars: floats or one-element real tensors (tensors are moved to the host
                with the next batch, not now). Ignored on ranks that do not record.

        Raises:
            ValueError: a step a run file cannot store (negative, not an integer, 2**63 or
                more), a name that is not text, or a value that is not a real number;
                nothing of this call is recorded, every later step is.
        """
        self._check_open()
        target = max(self.step_index - 1, 0) if step is None else check_step(step)
        for name, value in scalars.items():  # checked, all of them, before any is kept
            self._pending.check(name, value)
        for name, value in scalars.items():
            self._pending.scalar(target, name, value)
        if self.guard is not None:
            self.guard.observe_loss(scalars.get("loss"))

    def flush(self) -> None:
        """Move pending statistics to the host (one transfer) and commit them to the run file."""
        self._pending.flush()


__all__ = ["Monitor", "default_run_path"]
