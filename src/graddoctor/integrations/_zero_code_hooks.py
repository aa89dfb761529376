"""The process-wide hooks of ``graddoctor run`` (see :mod:`graddoctor.integrations.zero_code`)."""

from __future__ import annotations

import atexit
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim import optimizer as optimizer_module

from .._foreach import norms
from .._paths import run_stamp
from ..monitor import Monitor
from ..monitor.schedules import Schedule, as_schedule
from ..probes.nonfinite_replay import locate_nonfinite
from ._zero_code_models import RootTracker, model_for, optimizer_parameters, replay_batch

MAX_REPLAYS = 3  # replays of non-finite steps per optimizer that found no source
_ACTIVE: list[Instrumentation] = []


@dataclass
class _Watched:
    """One optimizer under a Monitor, and what was done about its NaNs."""

    optimizer: torch.optim.Optimizer
    monitor: Monitor
    model: torch.nn.Module
    is_root: bool
    handle: Any = None
    logged_order: int = 0
    step_loss: torch.Tensor | None = None
    replays: int = 0
    located: bool = False


class Instrumentation:
    r"""Process-wide hooks that give every optimizer stepped while installed a Monitor.

    Use as a context manager (or :meth:`install` then :meth:`close`); see the module
    docstring of :mod:`graddoctor.integrations.zero_code` for what is hooked.

    Args:
        out_dir: folder of the run files.
        name: run file prefix (the script's name).
        every: schedule of parameter statistics (see :class:`~graddoctor.Monitor`).
        activations_every: schedule of activation statistics (from step 1); None never.
        modules: which modules' activations to record (``"leaf"``, ``"all"``, globs).
        locate: replay the first non-finite step under ``locate_nonfinite``.
        config: stored in each run's ``config``, with the optimizer's index and type.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike = "runs",
        *,
        name: str = "run",
        every: int | Schedule = 1,
        activations_every: int | Schedule | None = 10,
        modules: str | list[str] = "leaf",
        locate: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.every = as_schedule(every)
        activation_schedule = as_schedule(activations_every)
        self.activations_every: Schedule = lambda step: step > 0 and activation_schedule(step)
        self.modules = modules
        self.locate = locate
        self.config = dict(config or {})
        self.stamp = run_stamp()
        self.tracker = RootTracker()
        self.watched: dict[torch.optim.Optimizer, _Watched | None] = {}
        self.run_paths: list[Path] = []
        self._loss: tuple[int, torch.Tensor] | None = None  # (call order, last backpropagated loss)
        self._last_step_order = 0
        self._handles: list[Any] = []
        self._original_backward: Any = None
        self.installed = False

    # -- install / remove ------------------------------------------------------------
    def install(self) -> Instrumentation:
        """Install the global hooks and wrap ``torch.autograd.backward``."""
        if _ACTIVE:
            raise RuntimeError("graddoctor's zero-code instrumentation is already installed in this process")
        original = torch.autograd.backward

        def backward(*args: Any, **kwargs: Any) -> Any:
            self._note_backward(args[0] if args else kwargs.get("tensors"))
            return original(*args, **kwargs)

        self.tracker.install()
        self._handles.append(optimizer_module.register_optimizer_step_pre_hook(self._on_step))
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
            open_ = [w for w in self.watched.values() if w is not None and not w.monitor.closed]
            owner, crash_loss = self._crash_loss(open_) if error is not None else (None, None)
            for watched in open_:
                self._close_monitor(watched, error, crash_loss if watched is owner else None)
        finally:
            self.remove()

    def __enter__(self) -> Instrumentation:
        return self.install()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    # -- hooks -----------------------------------------------------------------------
    def _note_backward(self, tensors: Any) -> None:
        if isinstance(tensors, (tuple, list)) and len(tensors) == 1:
            tensors = tensors[0]
        if isinstance(tensors, torch.Tensor) and tensors.numel() == 1 and not self.tracker.paused:
            self.tracker.order += 1
            self._loss = (self.tracker.order, tensors.detach().reshape(()))

    def _on_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.tracker.paused:
            return
        if optimizer not in self.watched:
            self.watched[optimizer] = self._attach(optimizer)
        self._last_step_order = self.tracker.order

    def _attach(self, optimizer: torch.optim.Optimizer) -> _Watched | None:
        index = len(self.watched)
        path = self.out_dir / f"{self.name}-{self.stamp}-opt{index}.gdr"
        try:
            model, is_root = model_for(optimizer, self.tracker.roots())
            config = {**self.config, "optimizer_index": index, "optimizer": type(optimizer).__name__,
                      "model_found": "root module" if is_root else "container of modules and parameters"}
            monitor = Monitor(model, optimizer, path=path, every=self.every, activations_every=self.activations_every,
                              modules=self.modules, config=config)
        except Exception as err:  # never break the user's training
            warnings.warn(f"graddoctor: not monitoring {type(optimizer).__name__} #{index}: {err}", stacklevel=3)
            return None
        self.run_paths.append(path)
        watched = _Watched(optimizer, monitor, model, is_root)
        # registered after the Monitor's pre-hook: it runs once the gradients are read, before the update
        watched.handle = optimizer.register_step_pre_hook(lambda opt, a, k: self._check_step(watched))
        return watched

    def _check_step(self, watched: _Watched) -> None:
        step = watched.monitor.step_index
        try:
            self._log_loss(watched, step, self._loss)
            if self.locate and not watched.located and watched.replays < MAX_REPLAYS and (
                self._nonfinite(watched, watched.step_loss, [p.grad for p in optimizer_parameters(watched.optimizer)])
            ):
                self._localise(watched, step)
        except Exception as err:  # never break the user's training
            watched.located = True
            warnings.warn(f"graddoctor: NaN check failed at step {step}: {err}", stacklevel=2)

    # -- loss and NaN ----------------------------------------------------------------
    def _log_loss(self, watched: _Watched, step: int, loss: tuple[int, torch.Tensor] | None) -> None:
        """Log ``loss`` at ``step`` unless it was logged already (no backward since)."""
        watched.step_loss = None
        if loss is not None and loss[0] > watched.logged_order:
            watched.monitor.log(step=step, loss=loss[1])
            watched.logged_order, watched.step_loss = loss[0], loss[1]

    def _latest_loss(self) -> tuple[int, torch.Tensor] | None:
        """The last backpropagated loss, or the last loss module's output when it came later
        (a script that raised on a NaN loss before calling ``backward``)."""
        call = self.tracker.last_loss
        if call is not None and call.output is not None and (self._loss is None or call.order > self._loss[0]):
            return call.order, call.output.reshape(())
        return self._loss

    @staticmethod
    def _nonfinite(watched: _Watched, loss: torch.Tensor | None, tensors: Sequence[torch.Tensor | None]) -> bool:
        """Whether the loss or the norm of any tensor is NaN/Inf (one host sync)."""
        present = [t.detach() for t in tensors if t is not None]
        device = watched.monitor.device
        flags = [torch.isfinite(norms(present, 2.0, device)).all()] if present else []
        if loss is not None:
            flags.append(torch.isfinite(loss.to(device)))
        return bool(flags) and not bool(torch.stack(flags).all())

    def _localise(self, watched: _Watched, step: int) -> None:
        """Replay the model's last batch under ``locate_nonfinite``; record the source found."""
        watched.replays += 1
        batch = replay_batch(watched.model, self.tracker) if watched.is_root else None
        if batch is None:  # a container of several models, or no batch to replay
            watched.located = True
            return
        inputs, targets, loss_fn = batch
        writer = watched.monitor.writer
        self.tracker.paused = True
        try:
            report = locate_nonfinite(watched.model, inputs, targets, loss_fn)
        except Exception as err:
            watched.located = True
            writer.add_event(step, "nonfinite_locate_failed", {"step": step, "error": f"{type(err).__name__}: {err}"})
            return
        finally:
            self.tracker.paused = False
        if report is not None:
            watched.located = True
            replay_loss = type(loss_fn).__name__ if isinstance(loss_fn, torch.nn.Module) else loss_fn.__name__
            writer.add_event(step, "nonfinite_source", {**report.to_dict(), "step": step, "replay_loss": replay_loss})

    def _crash_loss(self, open_: list[_Watched]) -> tuple[_Watched | None, torch.Tensor | None]:
        """The loss of the step the script died in, and the optimizer it belongs to: the one
        whose model was called last before that loss (None if no loss came after the last step)."""
        loss = self._latest_loss()
        if loss is None or loss[0] <= self._last_step_order:
            return None, None
        called = [(self._last_call_order(w, loss[0]), i, w) for i, w in enumerate(open_)]
        called = [item for item in called if item[0] > 0]
        return (max(called, key=lambda item: item[:2])[2], loss[1]) if called else (None, None)

    def _last_call_order(self, watched: _Watched, before: int) -> int:
        """When ``watched``'s model (or one of its container's modules) was last called before ``before``."""
        modules = [watched.model] if watched.is_root else list(watched.model.children())
        orders = [call.order for call in map(self.tracker.calls.get, modules) if call is not None]
        return max([order for order in orders if order < before], default=0)

    def _close_monitor(self, watched: _Watched, error: BaseException | None, crash_loss: torch.Tensor | None) -> None:
        monitor = watched.monitor
        try:
            watched.handle.remove()
            step = monitor.step_index
            if error is not None:
                if crash_loss is not None:
                    monitor.log(step=step, loss=crash_loss)
                params = list(watched.model.parameters())
                if self.locate and not watched.located and self._nonfinite(watched, crash_loss, params):
                    self._localise(watched, step)
                monitor.writer.add_event(step, "exception", {"type": type(error).__name__, "message": str(error)})
        except Exception as err:  # recording the crash must never hide it
            warnings.warn(f"graddoctor: could not record the end of {monitor.path}: {err}", stacklevel=2)
        finally:
            monitor.close()
