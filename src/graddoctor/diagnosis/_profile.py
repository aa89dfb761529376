"""Views of a run the detectors share: layers in execution order, per-step profiles."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..layers import owner_module
from ..store import Run

WEIGHT_LAYER_TYPES = {
    "Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "RNN", "LSTM", "GRU", "ElmanRNN", "LeakyRNN", "NonDynamicallyQuantizableLinear",
}
SATURATING_TYPES = {"Sigmoid", "Tanh", "Hardtanh", "Softsign", "Hardsigmoid"}
RELU_TYPES = {"ReLU", "ReLU6", "Threshold"}
RECURRENT_TYPES = {"RNN", "LSTM", "GRU", "ElmanRNN", "LeakyRNN"}


@dataclass
class RunView:
    """Everything the detectors read, loaded once from a run."""

    run: Run
    order: list[str]
    types: dict[str, str]
    module_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    module_names: list[str] = field(default_factory=list)
    module_stats: dict[str, np.ndarray] = field(default_factory=dict)
    param_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    param_names: list[str] = field(default_factory=list)
    param_stats: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def model_type(self) -> str | None:
        return self.run.meta.get("model", {}).get("type")

    def modules_of_type(self, type_names: set[str]) -> list[str]:
        return [n for n in self.module_names if self.types.get(n) in type_names]

    def weight_layers(self) -> list[str]:
        """Monitored modules that hold weights, in execution order."""
        return [n for n in self.ordered(self.module_names) if self.types.get(n) in WEIGHT_LAYER_TYPES]

    def ordered(self, names: list[str]) -> list[str]:
        position = {n: i for i, n in enumerate(self.order)}
        return sorted(names, key=lambda n: position.get(n, len(position)))

    def module_column(self, stat: str, name: str) -> np.ndarray:
        return self.module_stats[stat][:, self.module_names.index(name)]

    def total_grad_norm(self) -> np.ndarray:
        """sqrt(sum of squared parameter gradient norms) per parameter step (NaN-aware)."""
        grads = self.param_stats.get("grad_norm")
        if grads is None or grads.size == 0:
            return np.zeros(0)
        measured = ~np.isnan(grads)
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.sqrt(np.nansum(np.square(grads), axis=1))
        nonfinite = self.param_stats["grad_nonfinite"]
        total[np.nansum(nonfinite, axis=1) > 0] = np.inf
        total[~measured.any(axis=1)] = np.nan
        return total

    def layer_grad_norm(self, step_index: int) -> dict[str, float]:
        """Parameter gradient norms grouped by owning module at one parameter step."""
        row = self.param_stats["grad_norm"][step_index]
        grouped: dict[str, float] = {}
        for name, value in zip(self.param_names, row, strict=True):
            module = owner_module(name)
            if not np.isnan(value):
                grouped[module] = float(np.sqrt(grouped.get(module, 0.0) ** 2 + value**2))
        return grouped


def load_view(run: Run) -> RunView:
    """Read the statistics the detectors need, once."""
    summary = run.meta.get("model", {}).get("modules", [])
    types = {m["name"]: m["type"] for m in summary}
    order = list(run.meta.get("execution_order") or [m["name"] for m in summary])
    view = RunView(run=run, order=order, types=types)
    stats = set(run.stat_names())
    if "act_mean" in stats:
        for stat in ("act_mean", "act_std", "act_saturated", "act_dead", "act_nonfinite", "out_grad_norm"):
            steps, names, values = run.series(stat)
            view.module_steps, view.module_names = steps, names
            view.module_stats[stat] = values
    if "grad_norm" in stats:
        for stat in ("grad_norm", "grad_max", "grad_nonfinite", "weight_norm", "update_norm", "update_ratio"):
            steps, names, values = run.series(stat)
            view.param_steps, view.param_names = steps, names
            view.param_stats[stat] = values
    return view


def geometric_fit(values: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of log10(values) over their index, and the overall ratio last/first.

    Returns:
        ``(decades_per_layer, log10(last / first))``; NaN when fewer than two positive values.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    index = np.arange(len(values))[keep]
    logs = np.log10(values[keep])
    slope = float(np.polyfit(index, logs, 1)[0])
    return slope, float(logs[-1] - logs[0])
