r"""The overhead budget: the Monitor times its own work and thins its costly statistics to fit.

``Monitor(..., budget=0.03)`` keeps the Monitor's own time near 3% of what the training
step takes without it. The gradient norms and non-finite counts are measured on every
step of their schedule whatever they cost (one fused norm and one host sync; the count
is taken only on a step whose norm is not finite); the costly statistics are thinned:

* **weights**: ``grad_max`` (a second pass over the gradients, as costly as their norm),
  ``weight_norm``, ``update_norm`` and ``update_ratio`` (a copy of the weights before the
  step, a subtraction and two norms after it), from every step to every 2, 4, ...,
  :data:`MAX_STRETCH` steps;
* **activations**: the module hooks, from every 10 steps to every 20, 40, ... steps.

The first :data:`DENSE_START` steps follow the full schedule: most failures begin there,
and the costs are measured there. From then on, every :data:`DECIDE_EVERY` steps, the
Monitor takes the median time of a step (:math:`T`, from one ``optimizer.step()`` to the
next: the median, so pauses of the loop such as evaluation or checkpointing do not count
as step time), the time per step of its always-on work (:math:`G`: the
gradient statistics and writing the run) and of one occurrence of each costly statistic
(:math:`c_k`), and picks the densest intervals :math:`n_k` (powers of two times the full
schedule's) with

.. math:: G + \sum_k c_k / n_k \le 0.8\, \max\big(b \, (T - G - \textstyle\sum_k c_k m_k),
    \; 1\,\mathrm{ms}\big)

per step (:math:`b` the budget, :math:`m_k` the occurrences per step in the window; a
Monitor under 1 ms a step is not worth thinning, see :data:`MIN_ALLOWANCE`); it
keeps its intervals while they stay within :math:`b`, so noise does not make the schedule
flicker. A thinned statistic is absent on the steps it skips, never NaN. An explicit
``every=`` or ``activations_every=`` is followed as given; ``budget=None`` measures on the
full schedule (weights every step, activations every 10 steps). Time is the host's
(``perf_counter``) on CPU and CUDA events on a GPU (``monitor._clock``): no extra sync.

The schedule in effect is recorded in the run's metadata (``meta["schedule"]``,
:meth:`Budget.meta`) and ``graddoctor show`` prints it (``monitor._schedule_text``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._schedule_text import describe_every

if TYPE_CHECKING:  # the clock imports torch; the budget itself does not need it
    from ._clock import Clock

AUTO = "auto"  # the default of every= and activations_every=: the budget's schedule
ALWAYS = "always"  # gradient statistics and writing the run: never thinned
WEIGHTS = "weights"
ACTIVATIONS = "activations"
STEP = "step"
DENSE_START = 100  # steps measured on the full schedule before any thinning
DECIDE_EVERY = 50  # steps between two decisions
MAX_STRETCH = 128  # a costly statistic is thinned to 1/128 of its full schedule at most
ACTIVATIONS_BASE = 10  # activations_every="auto" without thinning: every 10 steps
MARGIN = 0.8  # a new schedule aims at 80% of the budget
# A Monitor costing under 1 ms a step is never thinned: on a model that small a relative
# budget would cost its statistics and save no time anyone notices.
MIN_ALLOWANCE = 1e-3
SMOOTHING = 0.5  # weight of a window's cost of a statistic against the earlier estimate


class Budget:
    """The Monitor's share of the step time, and the schedule of its costly statistics.

    Args:
        fraction: the budget, a fraction of the uninstrumented step time (None: no budget,
            the full schedule).
        clock: times the Monitor's work (``monitor._clock``).
        every: the Monitor's ``every=`` (``"auto"``: gradients every step, weights thinned).
        activations_every: the Monitor's ``activations_every=`` (``"auto"``: thinned from 10).
        on_change: called with :meth:`meta` when the schedule changes and at :meth:`finish`.
    """

    def __init__(
        self,
        fraction: float | None,
        clock: Clock,
        every: Any = AUTO,
        activations_every: Any = AUTO,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.fraction = check_budget(fraction)
        self.clock = clock
        self.on_change = on_change
        self._every, self._activations_every = every, activations_every
        # the thinned statistics and their full-schedule intervals
        self.base: dict[str, int] = {}
        if every == AUTO:
            self.base[WEIGHTS] = 1
        if activations_every == AUTO:
            self.base[ACTIVATIONS] = ACTIVATIONS_BASE
        self.stretch = dict.fromkeys(self.base, 1)
        self.history: dict[str, list[list[int]]] = {k: [[0, b]] for k, b in self.base.items()}
        self.overhead: float | None = None  # the Monitor's measured share at the last decision
        self._cost: dict[str, float] = {}  # seconds per occurrence of each costly statistic
        self._window = _Window()
        self._mark: Any = None  # the clock's token at the last step's end
        self._marked = False

    @property
    def timing(self) -> bool:
        """Whether the Monitor's work is timed (a budget is set)."""
        return self.fraction is not None

    def every(self, statistic: str) -> int:
        """The current interval of a thinned statistic (``WEIGHTS``, ``ACTIVATIONS``)."""
        return self.base[statistic] * self.stretch[statistic]

    def due(self, statistic: str, step: int) -> bool:
        """Whether a thinned statistic is measured at ``step`` (True for one not thinned)."""
        return statistic not in self.base or step % self.every(statistic) == 0

    def timed(self, what: str, measure: Callable[..., Any], *args: Any) -> Any:
        """``measure(*args)``, its time counted as ``what`` (``ALWAYS``, ``WEIGHTS``, ``ACTIVATIONS``)."""
        if not self.timing:
            return measure(*args)
        token = self.clock.start()
        try:
            return measure(*args)
        finally:
            self.clock.stop(token, what)

    def ran(self, statistic: str) -> None:
        """Count one occurrence of a costly statistic (a step that measured it)."""
        if self.timing:
            self._window.occurrences[statistic] = self._window.occurrences.get(statistic, 0) + 1

    def step_done(self, step: int) -> None:
        """The end of ``step``: time it, and every ``DECIDE_EVERY`` steps after the dense start, decide."""
        if not self.timing:
            return
        if self._marked:
            self.clock.stop(self._mark, STEP)
        self._collect()
        if step == 0:  # the first step pays for allocations and warm-up: not a sample
            self._window = _Window()
        else:
            self._window.steps += 1
        self._mark, self._marked = self.clock.start(), True
        if step + 1 >= DENSE_START and (step + 1 - DENSE_START) % DECIDE_EVERY == 0:
            self._decide(step + 1)

    def _decide(self, next_step: int) -> None:
        window, self._window = self._window, _Window()
        spent = window.spent
        if window.steps == 0 or spent.get(STEP, 0.0) <= 0.0:
            return
        always = spent.get(ALWAYS, 0.0) / window.steps
        costly = sum(spent.get(k, 0.0) for k in (WEIGHTS, ACTIVATIONS))
        # the median step: a pause of the loop (evaluation, checkpointing, another model
        # trained in turn) is not step time the Monitor may spend
        steps = window.step_times or [spent[STEP] / window.steps]
        plain = float(np.median(steps)) - always - costly / window.steps
        if plain <= 0.0:
            return
        self.overhead = (always + costly / window.steps) / plain
        for statistic in (WEIGHTS, ACTIVATIONS):
            count = window.occurrences.get(statistic, 0)
            if count and statistic in spent:
                cost = spent[statistic] / count
                known = self._cost.get(statistic)
                self._cost[statistic] = (
                    cost if known is None else (SMOOTHING * cost + (1 - SMOOTHING) * known)
                )
        fixed = always + sum(  # costly statistics on the user's schedule
            spent.get(k, 0.0) / window.steps for k in (WEIGHTS, ACTIVATIONS) if k not in self.base
        )
        allowed = max(self.fraction * plain, MIN_ALLOWANCE)
        chosen = self._fit(fixed, MARGIN * allowed)
        current_fits = fixed + self._thinned_cost(self.stretch) <= allowed
        denser = any(chosen[k] < self.stretch[k] for k in chosen)
        if current_fits and not denser:
            return
        if chosen != self.stretch:
            self.stretch = chosen
            for statistic in self.base:
                self.history[statistic].append([next_step, self.every(statistic)])
            if self.on_change is not None:
                self.on_change(self.meta())

    def _thinned_cost(self, stretch: dict[str, int]) -> float:
        return sum(self._cost.get(k, 0.0) / (self.base[k] * stretch[k]) for k in stretch)

    def _fit(self, fixed: float, target: float) -> dict[str, int]:
        """The densest stretches (powers of two) whose cost per step, with ``fixed``, is at most ``target``."""
        stretch = dict.fromkeys(self.base, 1)
        while fixed + self._thinned_cost(stretch) > target:
            open_ = [k for k in stretch if stretch[k] < MAX_STRETCH]
            if not open_:
                break
            costliest = max(open_, key=lambda k: self._cost.get(k, 0.0) / stretch[k] / self.base[k])
            stretch[costliest] *= 2
        return stretch

    def _collect(self) -> None:
        """Add the timings the clock has finished to the current window."""
        for what, seconds in self.clock.collect().items():
            self._window.spent[what] = self._window.spent.get(what, 0.0) + seconds
        self._window.step_times += self.clock.samples().get(STEP, [])

    def meta(self) -> dict[str, Any]:
        """The schedule in effect, as recorded in the run's ``meta["schedule"]``."""
        weights = self.history.get(WEIGHTS, "with the gradients")
        activations = self.history.get(ACTIVATIONS, describe_every(self._activations_every))
        return {
            "budget": self.fraction,
            "gradients": "every step" if self._every == AUTO else describe_every(self._every),
            "weights": weights,
            "activations": activations,
            "overhead": None if self.overhead is None else round(self.overhead, 4),
        }

    def finish(self) -> None:
        """Record the schedule with the last measured overhead (the Monitor closes)."""
        if self.timing and self.on_change is not None and self.overhead is not None:
            self.on_change(self.meta())


class _Window:
    """What the steps since the last decision spent, and how often each costly statistic ran."""

    def __init__(self) -> None:
        self.steps = 0
        self.spent: dict[str, float] = {}
        self.step_times: list[float] = []  # each step's time, start to end
        self.occurrences: dict[str, int] = {}


def check_budget(fraction: Any) -> float | None:
    """``fraction`` as a float in (0, 1], or None.

    Raises:
        TypeError: not a number or None.
        ValueError: not in (0, 1].
    """
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"budget must be a fraction of the step time or None, got {fraction!r}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"budget must be in (0, 1] (0.03: 3% of the step time), got {fraction}")
    return float(fraction)


__all__ = [
    "ACTIVATIONS",
    "ALWAYS",
    "AUTO",
    "Budget",
    "WEIGHTS",
    "check_budget",
]
