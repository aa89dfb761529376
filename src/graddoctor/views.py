"""One read-side view of a recorded run: execution order, module families, per-module norms, layer rows.

Diagnosis, the figures, the HTML report and ``graddoctor show`` read a run through a
:class:`RunView`, never through a live model, so everything they show is there after the
training process died. A view reads each statistic from the run file once and answers:

* the modules in execution order (modules that never ran follow, in registration order);
* the families of each module (:data:`graddoctor._modules.FAMILIES`: ``weight_layer``,
  ``saturating``, ``rectifier``, ``non_saturating``, ``normalization``, ``recurrent``), as
  recorded with the run, or from the module's type name for runs recorded before families
  were (:func:`graddoctor._modules.families_of_type_name`);
* per-module norms, a module's parameter norms combined in quadrature
  (:func:`graddoctor._views_norms.module_quadrature`);
* the per-layer rows of one step (:func:`layer_rows`, the table of ``graddoctor show``).

Layer: reads the store; read by diagnosis, the report and the CLI.
"""

from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path

import numpy as np

from ._modules import WEIGHT_LAYER, families_of_type_name
from ._views_groups import Series, StatGroup
from ._views_norms import group_by_owner, module_quadrature, owner_module, reduce_groups
from ._views_rows import LayerRow, layer_rows
from .probes.statistics import ACTIVATION_STATS, PARAMETER_STATS, time_stat_name
from .store import Run

# the statistic recorded per recurrent module: ||dLoss/dx_t|| for each input time step t
TIME_GRAD_PREFIX = time_stat_name("")


class RunView:
    """A recorded run as diagnosis and the report read it: structure, then statistics.

    Attributes:
        run: the open run (the view never closes it).
        order: every module name in execution order, then the modules that never ran in
            registration order.
        types: module name -> type name.
        families: module name -> its families, in :data:`graddoctor._modules.FAMILIES` order.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        summary = run.model_summary
        self.types: dict[str, str] = {m["name"]: m["type"] for m in summary}
        self.families: dict[str, tuple[str, ...]] = {
            m["name"]: tuple(m["families"])
            if "families" in m
            else tuple(families_of_type_name(m["type"]))
            for m in summary
        }
        executed = list(run.meta.get("execution_order") or [])
        ran = set(executed)
        self.order: list[str] = executed + [m["name"] for m in summary if m["name"] not in ran]
        self._position = {name: i for i, name in enumerate(self.order)}
        self._series: dict[str, Series] = {}
        self._scalars: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._owners: dict[tuple[str, ...], dict[str, list[int]]] = {}

    # -- the run's records ---------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def model_type(self) -> str | None:
        return self.run.meta.get("model", {}).get("type")

    @cached_property
    def stat_names(self) -> list[str]:
        """Every statistic declared in the run."""
        return self.run.stat_names()

    def series(self, stat: str) -> Series:
        """``(steps, names, values)`` of one statistic, read from the file once.

        A parameter or activation statistic comes from its family (:attr:`params`,
        :attr:`modules`): the family's steps and columns, NaN where it was not recorded.
        """
        for stats, family in ((PARAMETER_STATS, "params"), (ACTIVATION_STATS, "modules")):
            group = getattr(self, family) if stat in stats else None
            if group is not None and group.stats:
                return group.steps, group.names, group.stats[stat]
        if stat not in self._series:
            self._series[stat] = self.run.series(stat)
        return self._series[stat]

    def scalars(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a scalar (``"loss"``), read from the file once; read-only arrays."""
        if name not in self._scalars:
            read = self.run.scalars(name)
            for array in read:
                array.flags.writeable = False
            self._scalars[name] = read
        return self._scalars[name]

    @cached_property
    def steps(self) -> np.ndarray:
        """Every recorded step (``Run.steps()``), read from the file once; read-only."""
        steps = self.run.steps()
        steps.flags.writeable = False
        return steps

    def has_stat(self, stat: str) -> bool:
        """Whether ``stat`` was declared and has at least one recorded step."""
        if stat in self._series:
            return self._series[stat][0].size > 0
        return stat in self.stat_names and self.run.count(stat) > 0

    def has_scalar(self, name: str) -> bool:
        """Whether the scalar ``name`` (e.g. ``"loss"``) was recorded at least once."""
        return name in self.run.scalar_names()

    def time_gradient_stats(self) -> dict[str, str]:
        """Recurrent module -> its ``time_grad_norm:<module>`` statistic, in execution order."""
        found = {
            s[len(TIME_GRAD_PREFIX) :]: s for s in self.stat_names if s.startswith(TIME_GRAD_PREFIX)
        }
        found = {module: stat for module, stat in found.items() if self.has_stat(stat)}
        return {module: found[module] for module in self.ordered(list(found))}

    @cached_property
    def params(self) -> StatGroup:
        """The parameter statistics (``graddoctor.probes.statistics.PARAMETER_STATS``)."""
        return self._group(PARAMETER_STATS)

    @cached_property
    def modules(self) -> StatGroup:
        """The module (activation) statistics (``graddoctor.probes.statistics.ACTIVATION_STATS``)."""
        return self._group(ACTIVATION_STATS)

    def _group(self, stats: tuple[str, ...]) -> StatGroup:
        """One family's statistics over the union of their steps; NaN where not recorded.

        A statistic a (partial or crafted) file lacks, or holds at fewer steps, reads as
        not measured there, so a detector that needs it finds nothing. The columns are
        those of the first declared statistic; one declared over others is not the family's.
        """
        declared = [stat for stat in stats if stat in self.stat_names]
        if not declared:
            return StatGroup(np.zeros(0, dtype=np.int64), [], {})
        group = self.run.group_of(declared[0])
        read = {
            stat: self.run.series(stat) for stat in declared if self.run.group_of(stat) == group
        }
        names = self.run.names(group)
        steps = np.unique(np.concatenate([recorded for recorded, _, _ in read.values()]))
        values = {stat: np.full((steps.size, len(names)), np.nan) for stat in stats}
        for stat, (recorded, _, columns) in read.items():
            values[stat][np.searchsorted(steps, recorded)] = columns
        return StatGroup(steps, names, values)

    def without_steps(self, steps: np.ndarray) -> RunView:
        """A view whose parameter and module statistics leave out the rows at ``steps``."""
        other = copy.copy(self)
        other.params = self.params.without_steps(steps)
        other.modules = self.modules.without_steps(steps)
        return other

    # -- structure -----------------------------------------------------------------------
    def ordered(self, names: list[str]) -> list[str]:
        """``names`` sorted by execution order (names the model does not have go last)."""
        last = len(self._position)
        ranked = sorted(
            enumerate(names), key=lambda pair: (self._position.get(pair[1], last), pair[0])
        )
        return [name for _, name in ranked]

    def position(self, name: str) -> int | None:
        """``name``'s index in :attr:`order` (None for a module the model does not have)."""
        return self._position.get(name)

    def modules_in(self, family: str, names: list[str] | None = None) -> list[str]:
        """The modules of a family, in execution order.

        Args:
            family: one of :data:`graddoctor._modules.FAMILIES`.
            names: the modules to choose from (default: every module of the model).
        """
        chosen = self.order if names is None else names
        return self.ordered([n for n in chosen if family in self.families.get(n, ())])

    def has_family(self, family: str) -> bool:
        """Whether any module of the model belongs to ``family``."""
        return any(family in found for found in self.families.values())

    def weight_layers(self) -> list[str]:
        """Monitored modules that hold weights, in execution order."""
        return self.modules_in(WEIGHT_LAYER, self.modules.names)

    # -- per-module norms ----------------------------------------------------------------
    def parameter_groups(self, param_names: list[str]) -> dict[str, list[int]]:
        """Module -> column indices of its parameters, modules in execution order."""
        key = tuple(param_names)  # each statistic's columns are grouped once
        if key not in self._owners:
            groups = group_by_owner(param_names)
            self._owners[key] = {module: groups[module] for module in self.ordered(list(groups))}
        return dict(self._owners[key])

    def module_norms(self, stat: str) -> Series:
        """A per-parameter norm statistic combined per module: ``(steps, modules, [S, M])``."""
        steps, params, values = self.series(stat)
        groups = self.parameter_groups(params)
        return steps, list(groups), module_quadrature(values, groups)

    def module_gradient_norms(self) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """Per-module gradient norms over steps, and where they were non-finite.

        A parameter counts as measured at a step when its ``grad_nonfinite`` count was
        recorded (a parameter without a gradient has NaN there), so a NaN gradient norm
        is told apart from "no gradient".

        Returns:
            ``(steps [S], modules [M], norms [S, M], nonfinite [S, M] bool)``.
        """
        steps, params, grad_norm = self.series("grad_norm")
        count_steps, _, counts = self.series("grad_nonfinite")
        if not np.array_equal(steps, count_steps):
            raise ValueError(
                f"{self.path.name}: grad_norm and grad_nonfinite were recorded at different steps"
            )
        measured = ~np.isnan(counts)
        groups = self.parameter_groups(params)
        norms = module_quadrature(grad_norm, groups, measured)
        with np.errstate(invalid="ignore"):
            bad_counts = reduce_groups(np.logical_or, counts > 0, groups)
        any_measured = reduce_groups(np.logical_or, measured, groups)
        nonfinite = bad_counts | (any_measured & ~np.isfinite(norms))
        return steps, list(groups), norms, nonfinite

    def total_grad_norm(self) -> np.ndarray:
        """The norm of every parameter gradient together, per parameter step.

        Inf where a gradient entry was non-finite; NaN where no gradient norm is a number.
        """
        grads = self.params.stats.get("grad_norm")
        if grads is None or grads.size == 0:
            return np.zeros(0)
        measured = ~np.isnan(grads)
        total = module_quadrature(grads, {"": list(range(grads.shape[1]))}, measured)[:, 0]
        total[np.nansum(self.params.stats["grad_nonfinite"], axis=1) > 0] = np.inf
        total[~measured.any(axis=1)] = np.nan
        return total

    def total_update_ratio(self) -> np.ndarray:
        r"""The size of each step's update against the weights, all parameters together.

        .. math:: \frac{\|\theta_{t+1} - \theta_t\|}{\|\theta_{t+1}\|}

        (the weights after the update, as the probes record ``update_ratio``).

        Returns:
            one value per parameter step; NaN where no update or weight norm was recorded.
        """
        updates = self.params.stats.get("update_norm")
        weights = self.params.stats.get("weight_norm")
        if updates is None or weights is None or updates.size == 0:
            return np.zeros(0)
        every = {"": list(range(updates.shape[1]))}
        update = module_quadrature(updates, every, ~np.isnan(updates))[:, 0]
        weight = module_quadrature(weights, every, ~np.isnan(weights))[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(weight > 0, update / weight, np.nan)

    def layer_grad_norm(self, step_index: int) -> dict[str, float]:
        """Gradient norm per module with a measured gradient, at one parameter step."""
        row = self.params.stats["grad_norm"][step_index : step_index + 1]
        groups = group_by_owner(self.params.names)
        norms = module_quadrature(row, groups, ~np.isnan(row))[0]
        return {
            module: float(v) for module, v in zip(groups, norms, strict=True) if not np.isnan(v)
        }


def load_view(run: Run | RunView) -> RunView:
    """The view of an open run (a view is returned as it is); statistics load on first use."""
    return run if isinstance(run, RunView) else RunView(run)


__all__ = [
    "TIME_GRAD_PREFIX",
    "LayerRow",
    "RunView",
    "StatGroup",
    "layer_rows",
    "load_view",
    "module_quadrature",
    "owner_module",
]
