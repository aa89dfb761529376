"""What one training step measures: the probes, their schedules, and the blocks they return.

The Monitor decides when a step begins and ends (optimizer hooks, GradScaler, or manual
calls); this object measures at those moments and hands back named statistic blocks,
still on the device. Under a sharded layout every rank measures, and the parameter block
is reduced to global values with one collective per recorded step.

The gradients of a step are measured once, at the first of: a clip call of the loop
(``monitor.clip_watch``), the optimizer's step pre-hook (or its closure's first call), a
manual ``before_step()``/``step()``. A measurement that raises reads NaN (``_failsafe``).
The weights and updates, and the module hooks, follow the overhead budget's schedule
(``monitor._budget``), which also times all of this work.
"""

from __future__ import annotations

from typing import Any

import torch

from ..probes._stat_block import StatBlock
from ..probes.activations import ActivationProbe
from ..probes.parameters import ParameterProbe
from ..probes.statistics import ACTIVATION_STATS, GRAD_STATS, PARAMETERS, WEIGHT_STATS
from ._budget import ACTIVATIONS, ALWAYS, AUTO, WEIGHTS, Budget
from ._clock import Clock, clock_for
from ._failsafe import Failsafe
from ._watched import Watched
from .amp import unscale_
from .distributed import Layout, reduce_parameter_stats
from .schedules import Schedule, as_schedule

UPDATE_STATS = ("update_norm", "update_ratio")  # what a failed weight copy loses


class StepMeasurements:
    """The probes of a Monitor and what they measured in the current step.

    Args:
        params: the parameter probe (gradients before the update, weights after).
        activations: the module probe (forward/backward hooks armed on scheduled steps).
        param_schedule, activation_schedule: which steps each probe measures.
        layout: who measures and how shards combine (``monitor.distributed``).
        failsafe: reports measurements that raise (default: a guard that only warns).
        budget: times the work and thins the weights and module statistics (default:
            none, the schedules as given).
    """

    def __init__(
        self,
        params: ParameterProbe,
        activations: ActivationProbe,
        param_schedule: Schedule,
        activation_schedule: Schedule,
        layout: Layout,
        failsafe: Failsafe | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.params = params
        self.activations = activations
        self.param_schedule = param_schedule
        self.activation_schedule = activation_schedule
        self.layout = layout
        self.device = params.device
        self._grads: StatBlock | None = None
        self._module_stats: StatBlock | None = None
        self._time_grads: dict[str, torch.Tensor] = {}
        self.activations_skipped: str | None = None  # why no module hook is installed (compiled)
        self._skip_reported = False
        self.failsafe = failsafe or Failsafe()
        self.measured_step: int | None = None  # the step whose gradients were measured
        self._snapshot_step: int | None = None  # the step whose weights were copied
        self.budget = budget or Budget(None, Clock(), every=None, activations_every=None)
        self._weights_due = False  # the measured step also measures weights and updates

    @classmethod
    def of(
        cls,
        watched: Watched,
        every: int | Schedule | str,
        activations_every: int | Schedule | str | None,
        track_updates: bool,
        layout: Layout,
        failsafe: Failsafe | None = None,
        budget: float | None = None,
        on_schedule: Any = None,
    ) -> StepMeasurements:
        """The probes of a Monitor's targets (no module hook on a compiled model).

        Args:
            watched: what the Monitor watches (``monitor._watched``).
            every, activations_every: the schedules of parameter and module statistics
                (``"auto"``: the budget's).
            track_updates: measure the optimizer's update (only with an optimizer).
            layout: who measures and how shards combine.
            failsafe: reports measurements that raise.
            budget: the overhead budget (a fraction of the step time, or None).
            on_schedule: called with the schedule (``Budget.meta()``) when it changes.
        """
        updates = track_updates and watched.optimizer is not None
        device = watched.params[0].device
        # a sharded step's collective needs the same rows on every rank: weights unthinned
        weights_by_budget = every == AUTO and layout.mode != "sharded"
        hooked = watched.activations_skipped is None  # a compiled model: no module hook
        plan = Budget(
            budget,
            clock_for(device),
            every=AUTO if weights_by_budget else (1 if every == AUTO else every),
            activations_every=activations_every if hooked else None,
            on_change=on_schedule,
        )
        measurements = cls(
            ParameterProbe(watched.params, track_updates=updates),
            ActivationProbe(watched.modules, plan.clock if plan.timing else None, ACTIVATIONS),
            as_schedule(1 if every == AUTO else every),
            (lambda step: plan.due(ACTIVATIONS, step))
            if activations_every == AUTO
            else as_schedule(activations_every),
            layout,
            failsafe,
            plan,
        )
        measurements.activations_skipped = watched.activations_skipped
        return measurements

    def before_update(
        self, step: int, snapshot: bool = True, grad_scale: torch.Tensor | None = None
    ) -> None:
        """Measure the gradients (and snapshot the weights) of a scheduled step; collect the module hooks.

        The gradients and module statistics of a step are measured once (the first call:
        maybe the loop's clip call); the weights are copied once, by the first call that
        asks for it while updates are tracked (a callback's ``before_step()`` may come
        after a clip call).

        Args:
            step: the step being measured.
            snapshot: copy the weights to measure the update (False when no update follows).
            grad_scale: the loss scale of still-scaled gradients (a self-unscaling optimizer
                under GradScaler): the ``loss_scaled`` statistics are divided by it.
        """
        if not self.layout.measuring:
            return
        scheduled = bool(self.failsafe.run(("the every= schedule",), self.param_schedule, step))
        weights = scheduled and self.budget.due(WEIGHTS, step)
        copy = snapshot and weights and self.params.track_updates
        if copy and self._snapshot_step != step:
            self._snapshot_step = step
            self.budget.timed(WEIGHTS, self.failsafe.run, UPDATE_STATS, self.params.snapshot)
        if self.measured_step == step:
            return
        self.measured_step = step
        self._weights_due = weights
        if scheduled:
            self._grads = self.budget.timed(
                ALWAYS, self.failsafe.run, GRAD_STATS, self._measure_grads, grad_scale
            )
            if self._grads is None:  # NaN rows keep a sharded step's collective in step
                n = len(self.params.params)
                self._grads = StatBlock.filled(GRAD_STATS, n, float("nan"), self.device)
            elif weights:  # max |g|: a second pass over the gradients, thinned with the weights
                self._grads = self.budget.timed(WEIGHTS, self._with_grad_max, grad_scale)
        if self.activations.installed:
            self.budget.timed(ACTIVATIONS, self._collect_modules)

    def _collect_modules(self) -> None:
        self.activations.remove()
        self._module_stats = self.failsafe.run(
            ACTIVATION_STATS, self.activations.collect, self.device
        )
        self._time_grads = self.failsafe.run(("time_grad_norm",), self.activations.time_gradients)
        self._time_grads = self._time_grads or {}
        for statistic, err in self.activations.take_failures().items():
            self.failsafe.failed(statistic.split(", "), err)

    def _with_grad_max(self, grad_scale: torch.Tensor | None) -> StatBlock:
        rows = self._grads.rows()
        grad_max = self.failsafe.run(("grad_max",), self.params.grad_max)
        if grad_max is None:
            grad_max = torch.full_like(rows["grad_norm"], float("nan"))
        elif grad_scale is not None:
            grad_max = grad_max / grad_scale.to(grad_max.device, torch.float32)
        rows["grad_max"] = grad_max.to(rows["grad_norm"].dtype)
        return StatBlock.from_rows({name: rows[name] for name in GRAD_STATS})

    def _measure_grads(self, grad_scale: torch.Tensor | None) -> StatBlock:
        grads = self.params.measure_grads(with_max=False)
        if grad_scale is not None:
            unscale_(grads, grad_scale)
        return grads

    def parameter_block(self, skipped: bool = False) -> StatBlock | None:
        """The step's global ``"parameters"`` block (weights measured now), or None if unscheduled.

        On a step the budget thins, the block holds the gradient rows only. Under a
        sharded layout this is the step's collective: every rank calls it on the same
        steps (with the same rows: the budget does not thin weights there).

        Args:
            skipped: the optimizer did not step (GradScaler found inf/NaN): the update is 0.
        """
        if self._grads is None:
            return None
        block, self._grads = self._grads, None
        if self._weights_due:
            self.budget.ran(WEIGHTS)
            block = block.cat(self.budget.timed(WEIGHTS, self._measure_weights, skipped))
        return self.budget.timed(
            ALWAYS,
            self.failsafe.run,
            (PARAMETERS,),
            reduce_parameter_stats,
            block,
            self.params.grad_present,
            self.layout,
        )

    def _measure_weights(self, skipped: bool) -> StatBlock:
        weights = self.failsafe.run(WEIGHT_STATS, self.params.measure_weights, skipped)
        if weights is None:
            n = len(self.params.params)
            weights = StatBlock.filled(WEIGHT_STATS, n, float("nan"), self.device)
        return weights

    def module_block(self) -> tuple[StatBlock | None, dict[str, torch.Tensor]]:
        """The step's ``"modules"`` block (or None) and each recurrent module's ``[T]`` time norms."""
        block, times = self._module_stats, self._time_grads
        self._module_stats, self._time_grads = None, {}
        return block, times

    def arm(self, step: int, recording: bool) -> str | None:
        """Close the previous step for the budget, and install the module hooks when
        ``step`` is scheduled (on the recording rank only).

        Returns:
            why they are not installed, the first time a scheduled step goes without them
            (``activations_skipped``), else None.
        """
        if step > 0:
            self.budget.step_done(step - 1)
        if not (recording and self.activation_schedule(step) and self.activations.modules):
            return None
        if self.activations_skipped is None:
            self.budget.ran(ACTIVATIONS)
            self.budget.timed(
                ACTIVATIONS, self.failsafe.run, ACTIVATION_STATS, self.activations.install
            )
            return None
        if self._skip_reported:
            return None
        self._skip_reported = True
        return self.activations_skipped

    def release(self) -> None:
        """Remove the module hooks, free the weight copy and record the schedule's last state."""
        self.activations.remove()
        self.params.release()
        self.budget.finish()


__all__ = ["StepMeasurements"]
