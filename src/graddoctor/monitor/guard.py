r"""The training Guard: skip bad updates, clip spikes, roll back to a good state when trouble repeats.

Usage::

    guard = graddoctor.Guard(spikes="clip", rollback=True)
    with Monitor(model, optimizer, guard=guard) as mon:
        for x, y in loader:
            ...; loss.backward(); optimizer.step(); mon.log(loss=loss)

Before every ``optimizer.step()`` the Guard reads the step's verdict (``monitor._verdict``:
one fused gradient norm, the loss logged since, one transfer; one all-reduce under
``torch.distributed``, so every rank decides the same) and applies its policies:

* **non-finite** gradients: the update is skipped: the optimizer's step is not called, so
  the weights and its state (momentum, Adam's moments) stay as they were, as GradScaler
  does; the parameters holding NaN/Inf are recorded. A non-finite logged loss counts as
  a bad step.
* **spikes**: a gradient norm above :math:`k` times the median of the last ``spike_window``
  accepted norms (``_signals.gradients.is_spike``; the "cliffs" of Pascanu et al. 2013)
  is clipped to that threshold, :math:`g \leftarrow g \cdot k\,m / \|g\|`, or skipped.
* **repeated trouble**: ``bad_steps`` bad steps within ``bad_window`` steps, or a loss
  diverging (the ``diverging_loss`` test of ``_signals.loss`` on the losses since the
  last rollback): the newest good state kept (every ``snapshot_every`` steps without
  trouble) is restored, the learning rate scaled by ``lr_factor`` and training goes on.
  The scale holds for the rest of the run: it is applied to each group's lr around every
  real step, so a loop or scheduler that sets the lr at every step (nanoGPT's cosine
  schedule) keeps it, and ``param_groups`` show the loop's own values between steps.
  After ``max_rollbacks`` rollbacks :class:`GuardGaveUp` is raised.

A vetoed step really is not taken: the Guard wraps ``optimizer.step`` for the Monitor's
lifetime (a step pre-hook cannot cancel a step). Under AMP, GradScaler skips its own
overflowing steps before calling the optimizer; the Guard judges the steps it lets
through. Every intervention is an event of the run file (:data:`EVENTS`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from typing import Any

import numpy as np
import torch

from .._findings import GradDoctorWarning
from .._signals.gradients import is_spike
from .._signals.loss import rising_window
from .._signals.thresholds import LOSS_WINDOW
from ._guard_events import EVENTS, guard_events
from ._guarded_step import GuardedStep, closure_run_once
from ._lr_scale import lrs_scaled, scaled_lrs
from ._snapshots import Snapshots
from ._verdict import nonfinite_parameters, optimizer_grads, step_verdict
from .amp import amp_attributes

SPIKE_MIN_HISTORY = 5  # accepted norms before a spike can be called


class GuardGaveUp(RuntimeError):
    """The Guard rolled back ``max_rollbacks`` times and the trouble came back."""


def _check(name: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise ValueError(f"Guard {name} must be one of {allowed}, got {value!r}")
    return value


class Guard:
    """Policies that protect a training run; pass it as ``Monitor(..., guard=Guard())``.

    Args:
        nonfinite: ``"skip"`` the update of a step with NaN/Inf gradients, or None.
        spikes: ``"clip"`` or ``"skip"`` a step whose gradient norm is a spike, or None.
        spike_factor: :math:`k`, the spike threshold over the running median.
        spike_window: how many accepted gradient norms the running median covers.
        rollback: restore the last good state on repeated trouble.
        bad_steps, bad_window: the trouble: this many bad steps within this many steps.
        diverging: a diverging loss is trouble too (needs ``mon.log(loss=...)``).
        snapshot_every: steps between snapshots of the good state.
        snapshots_kept: how many snapshots to keep.
        snapshot_dir: a folder for the snapshots (None: in memory).
        lr_factor, min_lr: each rollback multiplies every lr by ``lr_factor`` (a decade, as the
            ``lower_lr`` remedy) for the rest of the run (:attr:`lr_scale`), never below
            ``min_lr``.
        max_rollbacks: rollbacks allowed; trouble after that raises :class:`GuardGaveUp`.
    """

    def __init__(
        self, *, nonfinite: str | None = "skip", spikes: str | None = "clip",
        spike_factor: float = 10.0, spike_window: int = 50, rollback: bool = True,
        bad_steps: int = 3, bad_window: int = 20, diverging: bool = True,
        snapshot_every: int = 50, snapshots_kept: int = 2,
        snapshot_dir: str | os.PathLike | None = None, lr_factor: float = 0.1,
        min_lr: float = 0.0, max_rollbacks: int = 3,
    ) -> None:  # fmt: skip
        self.nonfinite = _check("nonfinite", nonfinite, ("skip", None))
        self.spikes = _check("spikes", spikes, ("clip", "skip", None))
        if (
            spike_factor <= 1
            or spike_window < SPIKE_MIN_HISTORY
            or min(bad_steps, bad_window, snapshot_every) < 1
        ):
            raise ValueError("Guard needs spike_factor > 1, spike_window >= 5 and bad_steps, "
                             "bad_window, snapshot_every >= 1")  # fmt: skip
        if not 0 < lr_factor <= 1:
            raise ValueError(f"Guard lr_factor must be in (0, 1], got {lr_factor}")
        self.spike_factor, self.spike_window = float(spike_factor), int(spike_window)
        self.rollback, self.diverging = bool(rollback), bool(diverging)
        self.bad_steps, self.bad_window = int(bad_steps), int(bad_window)
        self.snapshot_every, self.snapshots_kept = int(snapshot_every), int(snapshots_kept)
        self.snapshot_dir, self.lr_factor, self.min_lr = (
            snapshot_dir,
            float(lr_factor),
            float(min_lr),
        )
        self.max_rollbacks = int(max_rollbacks)
        self.interventions: list[dict[str, Any]] = []  # every event, also kept here
        self.rollbacks = 0
        # what the rollbacks did to the learning rate, applied around each real step: a
        # loop or scheduler that sets the lr at every step (nanoGPT) keeps the reduction
        self.lr_scale = 1.0
        self._monitor: Any = None

    # -- lifetime -----------------------------------------------------------------------
    def attach(self, monitor: Any, optimizer: torch.optim.Optimizer | None = None) -> GuardedStep:
        """Wrap ``optimizer.step`` (default: the Monitor's) until the returned handle's ``remove()``."""
        optimizer = optimizer if optimizer is not None else monitor.optimizer
        if optimizer is None:
            raise ValueError("a Guard needs the optimizer: Monitor(model, optimizer, guard=...)")
        if self._monitor is not None:
            raise RuntimeError("this Guard already protects a run: create one Guard per Monitor")
        self._monitor, self.optimizer = monitor, optimizer
        names = {id(p): n for n, p in monitor.model.named_parameters()}
        self._names = names
        self._reduce = None if monitor.layout.mode == "single" else monitor.layout.mode
        self._history: deque[float] = deque(maxlen=self.spike_window)
        self._bad: deque[int] = deque()
        self._losses: list[tuple[int, float]] = []
        self._pending_losses: list[Any] = []
        self._rise_begin, self._last_snapshot = (
            1,
            -self.snapshot_every,
        )  # a snapshot at the first step
        self._snapshots = None
        if self.rollback and monitor.layout.mode == "sharded":
            warnings.warn(
                "graddoctor Guard: no rollback of a sharded (FSDP) model",
                GradDoctorWarning,
                stacklevel=3,
            )
            self.rollback = False
        if self.rollback:
            self._snapshots = Snapshots(
                monitor.model, optimizer, self.snapshots_kept, self.snapshot_dir
            )
        return GuardedStep(self, optimizer)

    def observe_loss(self, value: Any) -> None:
        """A loss the loop logged (kept on the device until the next step's verdict)."""
        if value is not None and self._monitor is not None:
            self._pending_losses.append(
                value.detach() if isinstance(value, torch.Tensor) else float(value)
            )

    # -- the step -----------------------------------------------------------------------
    def _step(self, original: Any, *args: Any, **kwargs: Any) -> Any:
        loss, args, kwargs = closure_run_once(self.optimizer, args, kwargs)
        try:
            take = self._judge(self._monitor.step_index)
        except GuardGaveUp:
            raise
        except Exception as err:  # a fault of the Guard never stops training
            warnings.warn(
                f"graddoctor Guard: step not judged: {err!r}", RuntimeWarning, stacklevel=3
            )
            take = True
        if not take:
            monitor = self._monitor
            if monitor.optimizer is self.optimizer:  # hooked: no hook fires, close the step here
                monitor.probes.before_update(monitor.step_index, snapshot=False)
                monitor._finish_step(skipped=True)
            return loss
        with lrs_scaled(self.optimizer, self.lr_scale, self.min_lr):
            result = original(*args, **kwargs)
        return loss if callable(kwargs.get("closure")) else result

    def _judge(self, step: int) -> bool:
        """Whether ``step`` updates the weights; records and acts on the rest."""
        params, grads = optimizer_grads(self.optimizer)
        losses, self._pending_losses = self._pending_losses, []
        verdict = step_verdict(grads, losses, amp_attributes(self.optimizer)[1], self._reduce)
        if verdict.loss is not None and step > 0:
            self._losses.append((step - 1, verdict.loss))
        if not verdict.loss_finite:
            self._mark_bad(step - 1)
        take = True
        if not verdict.grads_finite and self.nonfinite:
            where = nonfinite_parameters([self._names.get(id(p), "?") for p in params], grads)
            self._event(step, "guard_skipped", reason="nonfinite", parameters=where,
                        modules=list(dict.fromkeys(n.rpartition(".")[0] for n in where)))  # fmt: skip
            self._mark_bad(step)
            take = False
        elif verdict.grads_finite:
            spike, median = is_spike(
                verdict.grad_norm, np.asarray(self._history), self.spike_factor, SPIKE_MIN_HISTORY
            )
            if spike and self.spikes:
                threshold = self.spike_factor * median
                evidence = {
                    "grad_norm": verdict.grad_norm,
                    "threshold": threshold,
                    "running_median": median,
                }
                if self.spikes == "clip":
                    torch._foreach_mul_(grads, threshold / verdict.grad_norm)
                    self._event(step, "guard_clipped", **evidence)
                else:
                    self._event(step, "guard_skipped", reason="spike", **evidence)
                    take = False
                self._mark_bad(step)
            else:
                self._history.append(verdict.grad_norm)
        trouble = self._trouble(step)
        if trouble is not None:
            self._roll_back(step, *trouble)
            return False
        if (
            take
            and self._snapshots is not None
            and not self._bad
            and step - self._last_snapshot >= self.snapshot_every
        ):
            self._snapshots.take(step)
            self._last_snapshot = step
        return take

    def _mark_bad(self, step: int) -> None:
        if step >= 0 and step not in self._bad:
            self._bad.append(step)

    def _trouble(self, step: int) -> tuple[str, int] | None:
        """``(reason, first step of the trouble)`` when a rollback is due."""
        while self._bad and self._bad[0] <= step - self.bad_window:
            self._bad.popleft()
        if not self.rollback:
            return None
        if len(self._bad) >= self.bad_steps:
            return f"{len(self._bad)} bad steps within {self.bad_window}", min(self._bad)
        if self.diverging and len(self._losses) > LOSS_WINDOW and step % 5 == 0:
            losses = np.array([value for _, value in self._losses])
            rising = rising_window(losses, self._rise_begin)
            self._rise_begin = max(1, len(losses) - LOSS_WINDOW + 1)
            if rising is not None:
                start, test, reference = rising
                return f"diverging loss ({test.replace('_', ' ')} {reference:.3g})", self._losses[
                    start
                ][0]
        return None

    def _roll_back(self, step: int, reason: str, since: int) -> None:
        lrs = scaled_lrs(self.optimizer, self.lr_scale, self.min_lr)
        if self.rollbacks >= self.max_rollbacks:
            self._event(step, "guard_gave_up", reason=reason, rollbacks=self.rollbacks, lr=lrs)
            raise GuardGaveUp(
                f"graddoctor Guard gave up at step {step}: {reason}, after {self.rollbacks} of "
                f"{self.max_rollbacks} rollbacks allowed (lr now {lrs[0]:.3g}). Lower the learning rate, or run `graddoctor diagnose` "
                f"on {self._monitor.path}."
            )
        restored = self._snapshots.restore(since)
        self.lr_scale *= self.lr_factor
        self.rollbacks += 1
        self._event(step, "guard_rollback", reason=reason, trouble_since=since, restored_step=restored,
                    lr_before=lrs, lr_scale=self.lr_scale,
                    lr_after=scaled_lrs(self.optimizer, self.lr_scale, self.min_lr),
                    rollbacks=self.rollbacks)  # fmt: skip
        self._bad.clear()
        self._losses, self._rise_begin = [], 1
        self._last_snapshot = step if restored is None else restored

    def _event(self, step: int, kind: str, **payload: Any) -> None:
        payload = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in payload.items()
        }
        self.interventions.append({"step": step, "kind": kind, **payload})
        self._monitor.writer.add_event(step, kind, payload)


__all__ = ["EVENTS", "Guard", "GuardGaveUp", "guard_events"]
