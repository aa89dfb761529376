"""The per-layer rows of one recorded step: parameter statistics grouped by module, and activations."""

from __future__ import annotations

import os
from dataclasses import field, make_dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._views_norms import group_by_owner, module_quadrature
from .probes.statistics import (
    ACTIVATION_STATS,
    BY_NAME,
    MAX,
    PARAMETER_STATS,
    SUM,
    SUM_OF_SQUARES,
)
from .store import Run, open_run

if TYPE_CHECKING:
    from .views import RunView

def _declared_fields() -> list:
    stats = PARAMETER_STATS + ACTIVATION_STATS
    return [("name", str), ("type", str), ("params", list, field(default_factory=list))] + [
        (stat, float, field(default=float("nan"))) for stat in stats
    ]


# one attribute per declared parameter and module statistic (probes.statistics), NaN when
# not recorded: a statistic added there is a column here without another list to edit
LayerRow = make_dataclass("LayerRow", _declared_fields(), namespace={"__module__": __name__})
LayerRow.__doc__ = """One module at one step: its parameters' statistics combined, and its activations.

Attributes: ``name``, ``type``, ``params`` (its parameters' names), then each statistic of
``probes.statistics`` by name (``grad_norm``, ``act_std``...), NaN when not recorded.
Parameter statistics combine over the module's parameters by their declared reduction:
norms in quadrature, maxima by max, counts by sum, ratios from the combined terms.
"""


def _stat_at(run: Run, stat: str, step: int | None) -> tuple[int | None, dict[str, float]]:
    try:
        found, names, vector = run.at(stat, step)
    except KeyError:
        return None, {}
    return found, dict(zip(names, vector.tolist(), strict=True))


def _parameter_step(run: Run, step: int | None) -> int | None:
    """``step`` (the last, when None) if any parameter statistic was recorded there."""
    found = [_stat_at(run, stat, step)[0] for stat in PARAMETER_STATS]
    found = [s for s in found if s is not None]
    return max(found) if found else None


def _activation_step(run: Run, step: int | None) -> int | None:
    """The last activation step at or before ``step`` (any, when ``step`` is None)."""
    act_steps = np.unique(np.concatenate([run.steps(s) for s in ACTIVATION_STATS]))
    eligible = act_steps if step is None else act_steps[act_steps <= step]
    return int(eligible[-1]) if eligible.size else None


def layer_rows(
    run: Run | RunView | str | os.PathLike, step: int | None = None
) -> tuple[int | None, list[LayerRow]]:
    """Rows for every module with parameters or activation statistics, in execution order.

    Args:
        run: a run, its view or its path (a path is opened and closed here).
        step: the step (default: the last step with parameter statistics).

    Returns:
        ``(step, rows)``; the activation columns come from the nearest recorded step at
        or before ``step`` (activations are usually recorded less often).
    """
    from .views import RunView  # views imports this module

    if isinstance(run, RunView):
        return rows_at(run, step)
    if isinstance(run, Run):
        return rows_at(RunView(run), step)
    with open_run(run) as opened:
        return rows_at(RunView(opened), step)


def _combined(values: np.ndarray, groups: dict[str, list[int]], reduction: str) -> np.ndarray:
    """Per module, its parameters' values ``[1, P]`` combined by a declared reduction."""
    if reduction == SUM_OF_SQUARES:
        return module_quadrature(values, groups)[0]
    out = np.full(len(groups), np.nan)
    for j, columns in enumerate(groups.values()):
        cells = values[0, columns]
        if reduction == MAX and not np.all(np.isnan(cells)):
            out[j] = np.nanmax(cells)
        elif reduction == SUM:
            out[j] = np.nansum(cells)
    return out


def rows_at(view: RunView, step: int | None = None) -> tuple[int | None, list[LayerRow]]:
    """The rows of :func:`graddoctor.views.layer_rows` from a view.

    A statistic the file does not hold (a partial file) reads as NaN in every row.
    """
    run = view.run
    step_found = _parameter_step(run, step)
    if step_found is None and step is not None:
        raise KeyError(f"no parameter statistics at step {step} in {run.path.name}")
    param_stats = {s: _stat_at(run, s, step_found)[1] for s in PARAMETER_STATS}
    act_step = _activation_step(run, step_found)
    act_stats = {
        s: _stat_at(run, s, act_step)[1] if act_step is not None else {} for s in ACTIVATION_STATS
    }

    params = run.names("parameters")
    groups = group_by_owner(params)
    rows = {
        m: LayerRow(m, view.types.get(m, "?"), [params[c] for c in cols])
        for m, cols in groups.items()
    }
    for module in run.names("modules"):
        rows.setdefault(module, LayerRow(module, view.types.get(module, "?")))
    vectors = {
        s: np.array([[param_stats[s].get(p, np.nan) for p in params]]) for s in PARAMETER_STATS
    }
    combined = {s: _combined(vectors[s], groups, BY_NAME[s].reduction) for s in PARAMETER_STATS}
    for stat in PARAMETER_STATS:
        ratio_of = BY_NAME[stat].ratio_of
        if ratio_of is not None:  # recomputed from the module's combined terms
            top, bottom = combined[ratio_of[0]], combined[ratio_of[1]]
            with np.errstate(divide="ignore", invalid="ignore"):
                combined[stat] = np.where(bottom != 0, top / bottom, np.nan)
    for j, module in enumerate(groups):
        for stat in PARAMETER_STATS:
            setattr(rows[module], stat, float(combined[stat][j]))
    for row in rows.values():
        for stat in ACTIVATION_STATS:
            setattr(row, stat, act_stats[stat].get(row.name, float("nan")))
    ranked = [rows[name] for name in view.ordered(list(rows))]
    return step_found if step_found is not None else act_step, ranked
