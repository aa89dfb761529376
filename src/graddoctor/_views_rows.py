"""The per-layer rows of one recorded step: parameter statistics grouped by module, and activations."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._views_norms import group_by_owner, module_quadrature
from .probes.statistics import ACTIVATION_STATS, PARAMETER_STATS
from .store import Run, open_run

if TYPE_CHECKING:
    from .views import RunView

# per-parameter norms whose module value is their quadrature sum
_NORM_STATS = ("grad_norm", "weight_norm", "update_norm")


@dataclass
class LayerRow:
    """One module at one step: its parameters' statistics combined, and its activations."""

    name: str
    type: str
    params: list[str] = field(default_factory=list)
    grad_norm: float = float("nan")
    grad_max: float = float("nan")
    grad_nonfinite: float = float("nan")
    weight_norm: float = float("nan")
    update_norm: float = float("nan")
    update_ratio: float = float("nan")
    act_mean: float = float("nan")
    act_std: float = float("nan")
    act_saturated: float = float("nan")
    act_dead: float = float("nan")
    act_nonfinite: float = float("nan")
    out_grad_norm: float = float("nan")


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
    norms = {s: module_quadrature(vectors[s], groups)[0] for s in _NORM_STATS}
    for j, (module, columns) in enumerate(groups.items()):
        row = rows[module]
        for stat in _NORM_STATS:
            setattr(row, stat, float(norms[stat][j]))
        grad_max = vectors["grad_max"][0, columns]
        row.grad_max = (
            float(np.nanmax(grad_max)) if not np.all(np.isnan(grad_max)) else float("nan")
        )
        row.grad_nonfinite = float(np.nansum(vectors["grad_nonfinite"][0, columns]))
        row.update_ratio = row.update_norm / row.weight_norm if row.weight_norm else float("nan")
    for row in rows.values():
        for stat in ACTIVATION_STATS:
            setattr(row, stat, act_stats[stat].get(row.name, float("nan")))
    ranked = [rows[name] for name in view.ordered(list(rows))]
    return step_found if step_found is not None else act_step, ranked
