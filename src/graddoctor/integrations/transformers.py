r"""Hugging Face: ``GradDoctorTrainerCallback`` records a run per ``Trainer.train`` and diagnoses it.

Where the gradients are read. In ``Trainer._inner_training_loop`` (transformers 5.x) the
order after the last accumulated backward is::

    grad_norm = self._clip_grad_norm(model)        # accelerator.clip_grad_norm_: unscale, then clip
    callback_handler.on_pre_optimizer_step(...)
    optimizer.step()
    callback_handler.on_optimizer_step(...)

so ``on_pre_optimizer_step`` sees gradients that are unscaled but already clipped to
``max_grad_norm`` (1.0 by default): every norm above it would read as the clip value, and
exploding gradients would be invisible. No callback event sits between the backward and
the clipping. The callback therefore moves the clipping after its measurement: at each
``on_step_begin`` it sets ``args.max_grad_norm = 0`` (the Trainer then only unscales and
computes the norm it logs, with ``max_norm=inf``, which leaves the gradients unchanged),
and in ``on_pre_optimizer_step`` it measures, clips with
``torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)`` (what Accelerate
runs for a single process or DDP) and puts ``args.max_grad_norm`` back, before anything
(a checkpoint's ``training_args.bin``) can see it changed. The optimizer therefore sees
exactly the gradients it would have seen without the callback.

With ``read_before_clipping=False`` the Trainer keeps its clipping; Accelerate then clips
with ``torch.nn.utils.clip_grad_norm_``, which the Monitor sees (``monitor.clip_watch``):
it reads the gradients just before that call, so they are unclipped either way, and the
clip's threshold and whether it fired are recorded (``clip/*``). Under FSDP or DeepSpeed
the clipping belongs to the wrapped model or the engine, so the callback leaves it alone
and records the clipped gradients; the run's config says so
(``gradients_read: "after_clipping"``) and a warning is issued.

The Trainer has no event for an exception: wrap ``trainer.train()`` in ``try/finally`` and
call ``callback.close()`` there to keep the last steps of a crashed run.

Usage::

    from graddoctor.integrations.transformers import GradDoctorTrainerCallback

    doctor = GradDoctorTrainerCallback(dirpath="runs")
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[doctor])
    trainer.train()
    doctor.diagnosis
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._findings import Finding
from ..monitor.guard import Guard
from ..monitor.schedules import Schedule
from ._guarded import attach_guard
from ._lazy import require
from ._runs import RunPerFit

FEATURE = "graddoctor.integrations.transformers"
_transformers = require("transformers", feature=FEATURE)


class GradDoctorTrainerCallback(RunPerFit, _transformers.TrainerCallback):
    """Records per-layer gradient, weight, update and activation statistics of each training.

    Args:
        path: the run file (a second ``train()`` writes ``<stem>-2.gdr``...). Default:
            ``<dirpath>/<name>-<time>.gdr``.
        dirpath: folder of the run files when ``path`` is not given.
        name: file name prefix when ``path`` is not given.
        every: schedule of parameter statistics, in optimizer steps (int n or ``step -> bool``).
        activations_every: schedule of module statistics (None: never).
        modules: ``"leaf"``, ``"all"`` or glob patterns of module names.
        track_updates: measure the optimizer's update (keeps one copy of the weights).
        read_before_clipping: move the Trainer's ``max_grad_norm`` clipping after the
            measurement (see the module docstring); False leaves it in the Trainer, where
            the Monitor still reads before it (not under FSDP or DeepSpeed).
        tensorboard: a TensorBoard log folder: the run is followed live into
            ``<tensorboard>/<run file stem>``.
        histograms_every: schedule of gradient histograms written to ``tensorboard``.
        overwrite: replace an existing run file.
        run_diagnosis: diagnose the run at the end (``self.diagnosis``) and print a one-line
            summary (world process zero only).
        verbose: also print the full diagnosis as a rich panel.
        guard: a :class:`graddoctor.Guard` protecting the training (skip, clip, roll back).
        on_finding: called with each live finding (they are also warned and logged).

    The loss is the one the Trainer logs (``on_log``): set ``logging_steps=1`` for a loss at
    every step.
    """

    FEATURE = FEATURE

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        dirpath: str | os.PathLike = "runs",
        name: str = "transformers",
        every: int | Schedule = 1,
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        track_updates: bool = True,
        read_before_clipping: bool = True,
        tensorboard: str | os.PathLike | None = None,
        histograms_every: int | Schedule | None = None,
        overwrite: bool = False,
        run_diagnosis: bool = True,
        verbose: bool = False,
        guard: Guard | None = None,
        on_finding: Callable[[Finding], Any] | None = None,
    ) -> None:
        self._init_runs(path, dirpath, name, every, activations_every, modules, track_updates,
                        tensorboard, histograms_every, overwrite, run_diagnosis, verbose)
        self.monitor_options["on_finding"] = on_finding  # live findings: warned, logged, and this
        self.guard = guard
        self.read_before_clipping = read_before_clipping
        self._model: torch.nn.Module | None = None
        self._args: Any = None
        self._max_grad_norm: float | None = None  # set while the callback does the clipping

    # -- training --------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.close()  # a previous train() that crashed
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"GradDoctorTrainerCallback needs the Trainer's model, got {type(model).__name__}")
        clipping = float(args.max_grad_norm or 0.0) > 0
        sharded = bool(getattr(args, "fsdp", None)) or bool(getattr(args, "deepspeed", None))
        take_over = clipping and self.read_before_clipping and not sharded
        if not clipping:
            read = "unclipped"
        elif not sharded:  # taken over, or seen through torch's clip function (monitor.clip_watch)
            read = "before_clipping"
        else:
            read = "after_clipping"
            why = "FSDP/DeepSpeed clip inside the engine"
            warnings.warn(f"graddoctor records gradients after the Trainer clipped them to max_grad_norm="
                          f"{args.max_grad_norm} ({why}): norms above it read as the clip value",
                          RuntimeWarning, stacklevel=2)
        path = _same_on_every_rank(self._next_path())
        config = {
            "integration": "transformers",
            "gradients_read": read,
            "max_grad_norm": args.max_grad_norm,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "fp16": bool(args.fp16),
            "bf16": bool(args.bf16),
        }
        self._open_run(model, path, config)
        attach_guard(self, kwargs.get("optimizer"))
        self._model, self._args = model, args
        self._max_grad_norm = float(args.max_grad_norm) if take_over else None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and self._max_grad_norm is not None:
            args.max_grad_norm = 0.0  # the Trainer only unscales; clipping waits for on_pre_optimizer_step

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is None:
            return
        self._before_step(self._model)
        if self._max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._model.parameters(), self._max_grad_norm)
            args.max_grad_norm = self._max_grad_norm

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if self.monitor is None or not self._stepping:
            return
        self._after_step()
        if optimizer is not None:
            self.monitor.log(**{f"lr/{i}": g.get("lr") for i, g in enumerate(optimizer.param_groups)})

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self.monitor is not None and logs and isinstance(logs.get("loss"), (int, float)):
            self.monitor.log(loss=logs["loss"])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        path = self.monitor.path if self.monitor is not None else None
        self.close()
        if path is not None:
            self._report(path, state.is_world_process_zero)

    # -- end -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the run of the training in progress and restore ``args.max_grad_norm``.

        The Trainer calls ``on_train_end`` only when training returns; after an
        exception, call this (e.g. in a ``finally``) to commit the last steps.
        """
        if self._max_grad_norm is not None and self._args is not None:
            self._args.max_grad_norm = self._max_grad_norm
        self._max_grad_norm, self._args, self._model = None, None, None
        self._close_run()


def _same_on_every_rank(path: Path) -> Path:
    """Rank 0's run path on every process (the default name holds a time stamp)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        chosen = [str(path)]
        torch.distributed.broadcast_object_list(chosen, src=0)
        return Path(chosen[0])
    return path



__all__ = ["GradDoctorTrainerCallback"]
