"""Per-layer views of a recorded step: parameter statistics grouped by their module.

Reads a run (never a live model), so ``graddoctor show`` and the report work on a run
whose process died.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .probes.activations import ACTIVATION_STATS
from .probes.parameters import PARAMETER_STATS
from .store import Run, open_run


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


def owner_module(param_name: str) -> str:
    """``"encoder.0.weight"`` -> ``"encoder.0"`` (the root model is ``""``)."""
    return param_name.rpartition(".")[0]


def _quadrature(values: np.ndarray) -> float:
    """sqrt(sum v^2), NaN if every value is NaN, propagating Inf/NaN otherwise."""
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    return float(np.sqrt(np.sum(np.square(values.astype(np.float64)))))


def _stat_at(run: Run, stat: str, step: int | None) -> tuple[int | None, dict[str, float]]:
    try:
        found, names, vector = run.at(stat, step)
    except KeyError:
        return None, {}
    return found, dict(zip(names, vector.tolist(), strict=True))


def layer_rows(run: Run | str, step: int | None = None) -> tuple[int | None, list[LayerRow]]:
    """Rows for every module with parameters or activation statistics, in execution order.

    Args:
        run: a run or its path.
        step: the step (default: the last step with parameter statistics).

    Returns:
        ``(step, rows)``; the activation columns come from the nearest recorded step at
        or before ``step`` (activations are usually recorded less often).
    """
    run = open_run(run)
    step_found, grad_norm = _stat_at(run, "grad_norm", step)
    if step_found is None and step is not None:
        raise KeyError(f"no parameter statistics at step {step} in {run.path.name}")
    param_stats = {s: _stat_at(run, s, step_found)[1] for s in PARAMETER_STATS}
    act_steps = run.steps("act_mean")
    act_step = None
    if act_steps.size:
        eligible = act_steps if step_found is None else act_steps[act_steps <= step_found]
        act_step = int(eligible[-1]) if eligible.size else None
    act_stats = {s: _stat_at(run, s, act_step)[1] if act_step is not None else {} for s in ACTIVATION_STATS}

    types = {m["name"]: m["type"] for m in run.model_summary}
    rows: dict[str, LayerRow] = {}
    for param in run.names("parameters"):
        module = owner_module(param)
        rows.setdefault(module, LayerRow(module, types.get(module, "?"))).params.append(param)
    for module in run.names("modules"):
        rows.setdefault(module, LayerRow(module, types.get(module, "?")))
    for row in rows.values():
        if row.params:
            def column(stat: str, row: LayerRow = row) -> np.ndarray:
                return np.array([param_stats[stat].get(p, np.nan) for p in row.params])

            row.grad_norm = _quadrature(column("grad_norm"))
            row.weight_norm = _quadrature(column("weight_norm"))
            row.update_norm = _quadrature(column("update_norm"))
            row.grad_max = float(np.nanmax(column("grad_max"))) if not np.all(np.isnan(column("grad_max"))) else np.nan
            row.grad_nonfinite = float(np.nansum(column("grad_nonfinite")))
            row.update_ratio = row.update_norm / row.weight_norm if row.weight_norm else float("nan")
        for stat in ACTIVATION_STATS:
            setattr(row, stat, act_stats[stat].get(row.name, float("nan")))
    order = run.meta.get("execution_order") or []
    position = {name: i for i, name in enumerate(order)}
    registration = {m["name"]: m["index"] for m in run.model_summary}
    ranked = sorted(rows.values(), key=lambda r: (position.get(r.name, len(order)), registration.get(r.name, 0)))
    return step_found if step_found is not None else act_step, ranked
