r"""Lightning: ``GradDoctorCallback`` records a run per ``trainer.fit`` and diagnoses it.

Where the gradients are read: Lightning calls ``on_before_optimizer_step`` after the
backward passes of all accumulated batches, after ``GradScaler.unscale_`` under 16-bit
AMP, and *before* it clips with ``gradient_clip_val`` (``Precision._after_closure`` calls
the hook, then ``_clip_gradients``). The callback measures gradients and snapshots the
weights there (``Monitor.before_step``), and measures weights and updates in
``on_train_batch_end`` of the batch whose optimizer step ran (``Monitor.after_step``), so
batches that only accumulate gradients record nothing.

Usage::

    from graddoctor.integrations.lightning import GradDoctorCallback

    doctor = GradDoctorCallback(dirpath="runs")
    trainer = lightning.Trainer(callbacks=[doctor], gradient_clip_val=1.0)
    trainer.fit(model, loader)
    doctor.diagnosis            # graddoctor.Diagnosis of the fit; doctor.run_path its run file

Works with ``lightning`` (``lightning.pytorch``) or, when that is not installed, the
standalone ``pytorch_lightning`` package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .._findings import Finding
from ..monitor.guard import Guard
from ..monitor.schedules import Schedule
from ._guarded import attach_guard
from ._lazy import first_available
from ._runs import RunPerFit

FEATURE = "graddoctor.integrations.lightning"
pl = first_available("lightning.pytorch", "pytorch_lightning", feature=FEATURE, package="lightning")


class GradDoctorCallback(RunPerFit, pl.Callback):
    """Records per-layer gradient, weight, update and activation statistics of each fit.

    Args:
        path: the run file of the fit (a second fit with the same callback writes
            ``<stem>-2.gdr``, then ``-3``...). Default: ``<dirpath>/<name>-<time>.gdr``.
        dirpath: folder of the run files when ``path`` is not given.
        name: file name prefix when ``path`` is not given.
        every: schedule of parameter statistics, in optimizer steps (int n or ``step -> bool``).
        activations_every: schedule of module statistics (None: never).
        modules: ``"leaf"``, ``"all"`` or glob patterns of module names.
        track_updates: measure the optimizer's update (keeps one copy of the weights).
        tensorboard: a TensorBoard log folder: the run is followed live into
            ``<tensorboard>/<run file stem>`` (see ``graddoctor.integrations.tensorboard``).
        histograms_every: schedule of gradient histograms written to ``tensorboard``.
        overwrite: replace an existing run file.
        run_diagnosis: diagnose the run at the end of the fit (``self.diagnosis``) and
            print a one-line summary (global rank 0 only).
        verbose: also print the full diagnosis as a rich panel.
        guard: a :class:`graddoctor.Guard` protecting the training (skip, clip, roll back).
        on_finding: called with each live finding (they are also warned and logged).

    Attributes:
        monitor: the Monitor of the fit in progress (None outside a fit).
        run_path: the run file of the last fit; ``run_paths`` all of them.
        diagnosis: the Diagnosis of the last fit (None before, or if it failed).
    """

    FEATURE = FEATURE

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        dirpath: str | os.PathLike = "runs",
        name: str = "lightning",
        every: int | Schedule = 1,
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        track_updates: bool = True,
        tensorboard: str | os.PathLike | None = None,
        histograms_every: int | Schedule | None = None,
        overwrite: bool = False,
        run_diagnosis: bool = True,
        verbose: bool = False,
        guard: Guard | None = None,
        on_finding: Callable[[Finding], Any] | None = None,
    ) -> None:
        super().__init__()
        self._init_runs(path, dirpath, name, every, activations_every, modules, track_updates,
                        tensorboard, histograms_every, overwrite, run_diagnosis, verbose)
        self.monitor_options["on_finding"] = on_finding  # live findings: warned, logged, and this
        self.guard = guard
        self._loss: torch.Tensor | None = None  # sum of the step's batch losses (as Lightning scaled them)

    # -- fit -------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._finish(trainer, None)  # a fit that ended without on_fit_end/on_exception
        path = Path(trainer.strategy.broadcast(str(self._next_path())))  # every rank: rank 0's name
        config = {
            "integration": "lightning",
            "gradients_read": "before_clipping",
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "gradient_clip_val": trainer.gradient_clip_val,
            "gradient_clip_algorithm": str(trainer.gradient_clip_algorithm or "norm") if trainer.gradient_clip_val else None,
            "precision": str(trainer.precision),
        }
        self._open_run(pl_module, path, config)
        attach_guard(self, trainer.optimizers[0] if trainer.optimizers else None)
        self._loss = None

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.monitor is None or self._stepping:  # several optimizers: the first one's view
            return
        self._before_step(pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.monitor is None:
            return
        loss = _loss_of(outputs)
        if loss is not None:
            self._loss = loss if self._loss is None else self._loss + loss
        if not self._stepping:  # accumulating gradients: no optimizer step on this batch
            return
        self._close_step(trainer)

    def _close_step(self, trainer: Any) -> None:
        self._after_step()
        scalars: dict[str, Any] = {}
        if self._loss is not None:
            scalars["loss"] = self._loss
            self._loss = None
        groups = [g for optimizer in trainer.optimizers for g in optimizer.param_groups]
        scalars.update({f"lr/{i}": g.get("lr") for i, g in enumerate(groups)})
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled():
            scalars["amp/scale"] = scaler.get_scale()
        self.monitor.log(**scalars)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish(trainer, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish(trainer, exception)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._finish(trainer, None)

    # -- end -------------------------------------------------------------------------
    def _finish(self, trainer: Any, exception: BaseException | None) -> None:
        monitor = self._close_run(exception)
        if monitor is not None:
            self._report(monitor.path, trainer.is_global_zero)


def _loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss in a ``training_step`` output (a tensor or a mapping with ``"loss"``)."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return outputs.detach().reshape(())
    return None



__all__ = ["GradDoctorCallback"]
