"""The process-wide hooks of ``graddoctor run`` (see :mod:`graddoctor.integrations.zero_code`)."""

from __future__ import annotations

import atexit
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.optim import optimizer as optimizer_module

from .._paths import run_stamp
from ..monitor._optimizers import after_first_call, step_closure
from ..monitor._schedule_text import describe_every
from ..monitor.schedules import Schedule, as_schedule
from ._zero_code_backward import BackwardSteps
from ._zero_code_losses import StepLosses
from ._zero_code_models import RootTracker, Watched, covering_root, model_for, optimizer_parameters
from ._zero_code_nonfinite import crash_loss, latest_loss, localise, nonfinite
from ._zero_code_runs import RunSettings, close_run, drop_run

MAX_REPLAYS = 3  # replays of non-finite steps per optimizer that found no source
_ACTIVE: list[Instrumentation] = []


class Instrumentation:
    r"""Process-wide hooks that give every optimizer stepped while installed a Monitor.

    Use as a context manager (or :meth:`install` then :meth:`close`); see the module
    docstring of :mod:`graddoctor.integrations.zero_code` for what is hooked.

    Args:
        out_dir: folder of the run files.
        name: run file prefix (the script's name).
        every: schedule of parameter statistics (see :class:`~graddoctor.Monitor`; ``"auto"``:
            gradient norms every step, weights as the overhead budget allows).
        activations_every: schedule of activation statistics (from step 1); None never.
        modules: which modules' activations to record (``"leaf"``, ``"all"``, globs).
        locate: replay the first non-finite step under ``locate_nonfinite``.
        config: stored in each run's ``config``, with the optimizer's index and type.
        guard: protect each optimizer with its own :class:`~graddoctor.Guard` (skip NaN/Inf
            updates, clip spikes, roll back on repeated trouble).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike = "runs",
        *,
        name: str = "run",
        every: int | Schedule | str = "auto",
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        locate: bool = True,
        config: dict[str, Any] | None = None,
        guard: bool = False,
    ) -> None:
        activation_schedule = as_schedule(activations_every)

        def after_the_first_step(step: int) -> bool:
            return step > 0 and activation_schedule(step)

        after_the_first_step.description = f"{describe_every(activations_every)} from step 1"
        self.settings = RunSettings(
            Path(out_dir),
            name,
            run_stamp(),
            every if every == "auto" else as_schedule(every),
            after_the_first_step,
            modules,
            dict(config or {}),
            guard,
        )
        self.locate = locate
        self.backward_steps = BackwardSteps(self._attach_backward, self._check)
        self.tracker = RootTracker(
            on_root_call=lambda module: self._guarded(
                "record the backward() step", self.backward_steps.on_forward, module
            )
        )
        self.watched: dict[torch.optim.Optimizer, Watched | None] = {}
        self.run_paths: list[Path] = []
        self.losses = StepLosses()
        self._loss: tuple[int, torch.Tensor] | None = None  # (call order, last backpropagated loss)
        self._last_step_order = 0
        # the optimizers inside step(), outermost first; whether the step's loss is taken
        # (later backwards inside the step are its closure's line search)
        self._stepping: list[torch.optim.Optimizer] = []
        self._step_loss_taken = False
        self._handles: list[Any] = []
        self._original_backward: Any = None
        self.installed = False

    # -- install / remove ------------------------------------------------------------
    def install(self) -> Instrumentation:
        """Install the global hooks and wrap ``torch.autograd.backward``."""
        if _ACTIVE:
            raise RuntimeError(
                "graddoctor's zero-code instrumentation is already installed in this process"
            )
        original = torch.autograd.backward

        def backward(*args: Any, **kwargs: Any) -> Any:
            loss = self._before_backward(args[0] if args else kwargs.get("tensors"))
            result = original(*args, **kwargs)
            self._after_backward(loss)
            return result

        self.tracker.install()
        self._handles.append(optimizer_module.register_optimizer_step_pre_hook(self._on_step))
        self._handles.append(optimizer_module.register_optimizer_step_post_hook(self._on_step_end))
        self._original_backward, torch.autograd.backward = original, backward
        atexit.register(self.close)
        _ACTIVE.append(self)
        self.installed = True
        return self

    def remove(self) -> None:
        """Remove every global hook and restore ``torch.autograd.backward`` (Monitors stay)."""
        if not self.installed:
            return
        self.tracker.remove()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        torch.autograd.backward = self._original_backward
        atexit.unregister(self.close)
        _ACTIVE.remove(self)
        self.installed = False

    def close(self, error: BaseException | None = None) -> None:
        """Localise a NaN left by a crash, record ``error``, close every Monitor, then :meth:`remove`.

        Args:
            error: the exception that ended the script, or None after a normal exit.
        """
        try:
            self._guarded("close the last backward() step", self.backward_steps.close_step)
            runs = [*self.watched.values(), self.backward_steps.watched]
            open_ = [w for w in runs if w is not None and not w.monitor.closed]
            loss = latest_loss(self.tracker, self._loss) if error else None
            owner, lost = crash_loss(open_, self.tracker, loss, self._last_step_order)
            for watched in open_:
                lost_here = lost if watched is owner else None
                close_run(watched, error, lost_here, self.tracker, self.locate)
        finally:
            self.remove()

    def __enter__(self) -> Instrumentation:
        return self.install()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    # -- backward --------------------------------------------------------------------
    def _before_backward(self, tensors: Any) -> torch.Tensor | None:
        """Note the loss ``backward()`` receives (a one-element tensor); close a hand-updated step."""
        if self.tracker.paused:
            return None
        self._guarded("record the backward() step", self.backward_steps.close_step)
        if isinstance(tensors, (tuple, list)) and len(tensors) == 1:
            tensors = tensors[0]
        if not isinstance(tensors, torch.Tensor) or tensors.numel() != 1:
            return None
        loss = tensors.detach().reshape(())
        self.tracker.order += 1
        self._loss = (self.tracker.order, loss)
        if not (self._stepping and self._step_loss_taken):  # not a closure's later evaluation
            self.losses.add(loss)
        return loss

    def _after_backward(self, loss: torch.Tensor | None) -> None:
        """While no optimizer has stepped, ``backward()`` is the step: measure its gradients."""
        if self.tracker.paused or self.watched or self._stepping or self.backward_steps.ended:
            return
        self._last_step_order = self.tracker.order
        step = self.backward_steps.after_backward
        self._guarded("record the backward() step", step, self.tracker.roots(), loss)

    def _attach_backward(self, parameters: list[torch.Tensor]) -> Watched | None:
        try:
            model, is_root = model_for(None, self.tracker.roots(), parameters)
            monitor = self.settings.start(
                model, is_root, None, "backward", {"step": "backward()", "optimizer": None}
            )
        except Exception as err:  # never break the user's training
            warnings.warn(f"graddoctor: not monitoring the backward() steps: {err}", stacklevel=4)
            return None
        self.run_paths.append(monitor.path)
        return Watched(None, monitor, model, is_root, list(monitor.probes.params.params))

    def _end_backward_steps(self) -> None:
        """An optimizer steps: its steps are the script's; a run of ``backward()`` steps is dropped."""
        watched = self.backward_steps.end()
        if watched is not None:
            drop_run(watched.monitor)
            self.run_paths.remove(watched.monitor.path)

    # -- optimizer steps -------------------------------------------------------------
    def _on_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        if self.tracker.paused or self._wrapped_by_stepping(optimizer):
            return None
        self._stepping.append(optimizer)
        self._step_loss_taken = False
        self._last_step_order = self.tracker.order
        if not self.backward_steps.ended:
            self._guarded("drop the backward() run", self._end_backward_steps)
        if optimizer in self.watched:
            return None
        self.watched[optimizer] = None
        if (
            step_closure(args, kwargs) is not None
            and covering_root(optimizer_parameters(optimizer), self.tracker.roots()) is None
        ):  # the closure calls the model inside step(): attach once it has
            return after_first_call(args, kwargs, lambda: self._attach_in_step(optimizer))
        self.watched[optimizer] = self._attach(optimizer)
        return None

    def _on_step_end(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if optimizer in self._stepping:
            del self._stepping[self._stepping.index(optimizer) :]

    def _wrapped_by_stepping(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether another optimizer is inside its step and holds every parameter of this one
        (a wrapper stepping the optimizer it wraps: one run, the wrapper's)."""
        if optimizer in self._stepping:  # left by a step that raised
            del self._stepping[self._stepping.index(optimizer) :]
        mine = {id(p) for p in optimizer_parameters(optimizer)}
        return any(mine <= {id(p) for p in optimizer_parameters(outer)} for outer in self._stepping)

    def _attach(self, optimizer: torch.optim.Optimizer) -> Watched | None:
        index = list(self.watched).index(optimizer)  # in order of first step
        name = type(optimizer).__name__
        try:
            model, is_root = model_for(optimizer, self.tracker.roots())
            config = {"optimizer_index": index, "optimizer": name}
            monitor = self.settings.start(model, is_root, optimizer, f"opt{index}", config)
        except Exception as err:  # never break the user's training
            warnings.warn(f"graddoctor: not monitoring {name} #{index}: {err}", stacklevel=3)
            return None
        self.run_paths.append(monitor.path)
        watched = Watched(optimizer, monitor, model, is_root, optimizer_parameters(optimizer))
        # registered after the Monitor's pre-hook: it runs once the gradients are read, before the update
        watched.handle = optimizer.register_step_pre_hook(
            lambda opt, a, k: self._check_hook(watched, a, k)
        )
        return watched

    def _attach_in_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Attach after the closure's first call (the model is known now) and measure this step."""
        watched = self.watched[optimizer] = self._attach(optimizer)
        if watched is not None:
            watched.monitor._begin_step(optimizer)  # its pre-hook came too late for this step
            self._check_step(watched)

    def _check_hook(self, watched: Watched, args: Any, kwargs: Any) -> Any:
        if step_closure(args, kwargs) is not None:  # after the Monitor measured the first call
            return after_first_call(args, kwargs, lambda: self._check_step(watched))
        self._check_step(watched)
        return None

    def _check_step(self, watched: Watched) -> None:
        """The step's loss (the backward group since the last step) is logged, then checked."""
        self._step_loss_taken = True
        group, loss = self.losses.take(), None
        if group is not None and group[0] > watched.logged_group:
            watched.logged_group, loss = group
        self._check(watched, loss)

    # -- loss and NaN ----------------------------------------------------------------
    def _check(self, watched: Watched, loss: torch.Tensor | None) -> None:
        """Log the step's loss; replay the batch when the loss or a gradient is NaN/Inf."""
        step = watched.monitor.step_index
        try:
            watched.step_loss = loss
            if loss is not None:
                watched.monitor.log(step=step, loss=loss)
            if (
                self.locate
                and not watched.located
                and watched.replays < MAX_REPLAYS
                and (nonfinite(watched.monitor.device, loss, [p.grad for p in watched.params]))
            ):
                localise(watched, self.tracker, step)
        except Exception as err:  # never break the user's training
            watched.located = True
            warnings.warn(f"graddoctor: NaN check failed at step {step}: {err}", stacklevel=2)

    @staticmethod
    def _guarded(what: str, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as err:  # never break the user's training
            warnings.warn(
                f"graddoctor: could not {what}: {type(err).__name__}: {err}", stacklevel=3
            )
