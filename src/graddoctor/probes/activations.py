"""Per-module activation statistics from forward hooks, and the back-propagated signal.

Hooks are installed only for the steps the schedule picks and removed right after, so
an unscheduled step runs the model exactly as without graddoctor.

For each module (its output's first floating tensor):

* ``act_mean``, ``act_std``: mean and (population) standard deviation of the output.
* ``act_saturated``: for a bounded activation with bounds ``[lo, hi]``, the fraction of
  outputs within 1% of ``hi - lo`` of either bound (NaN for other modules).
* ``act_dead``: for the ReLU family, the fraction of units that are 0 for every sample
  of the batch; a unit is a channel (dim 1) for convolution outputs, else a feature of
  the last dimension (NaN for other modules).
* ``act_nonfinite``: count of NaN/Inf outputs.
* ``out_grad_norm``: L2 norm of dLoss/dOutput (summed in quadrature over calls).

Recurrent modules (``nn.RNNBase`` or any module with a ``weight_hh`` parameter) also
record ``time_grad_norm:<name>``: the L2 norm over batch and features of dLoss/dx_t
for each time step t of their input, the quantity whose decay over t is the vanishing
gradient over time (Pascanu, Mikolov & Bengio 2013).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._wrappers import named_modules

ACTIVATION_STATS = ("act_mean", "act_std", "act_saturated", "act_dead", "act_nonfinite", "out_grad_norm")
SATURATION_MARGIN = 0.01  # "within 1% of the bounds", as a fraction of the output range
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CHANNEL_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d)


def activation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """The output range of a bounded (saturating) activation module, else None."""
    if isinstance(module, nn.Hardtanh):  # includes ReLU6
        return float(module.min_val), float(module.max_val)
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return 0.0, 1.0
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return -1.0, 1.0
    return None


def is_relu_family(module: nn.Module) -> bool:
    """True for activations whose units can be exactly 0 for every input (dead units)."""
    if isinstance(module, nn.Threshold):
        return float(module.value) == 0.0
    return isinstance(module, (nn.ReLU, nn.ReLU6))


def is_recurrent(module: nn.Module) -> bool:
    """nn.RNN/LSTM/GRU or any module owning a ``weight_hh`` recurrent matrix."""
    return isinstance(module, nn.RNNBase) or isinstance(getattr(module, "weight_hh", None), nn.Parameter)


def select_modules(model: nn.Module, patterns: str | Sequence[str] = "leaf") -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to monitor, in registration order.

    Args:
        model: the model.
        patterns: ``"leaf"`` (modules without children), ``"all"``, or glob patterns
            matched against ``model.named_modules()`` names (e.g. ``["encoder.*", "head"]``).

    Names are those of the plain model: DDP's ``module.`` and FSDP1's
    ``_fsdp_wrapped_module.`` are left out (see ``probes._wrappers``).

    Raises:
        ValueError: a pattern matches no module (the message lists some names).
    """
    named = list(named_modules(model))
    if patterns == "leaf":
        return [(n, m) for n, m in named if not any(True for _ in m.children())]
    if patterns == "all":
        return named
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = []
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in named):
            sample = ", ".join(repr(n) for n, _ in named[1:13])
            raise ValueError(f"no module of {type(model).__name__} matches {pattern!r}; module names are e.g. {sample}")
    for name, module in named:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            chosen.append((name, module))
    return chosen


def first_float_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor inside a (nested) output, else None."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_float_tensor(item)
            if found is not None:
                return found
    return None


class ActivationProbe:
    """Forward/backward hooks on chosen modules for one recorded step at a time."""

    def __init__(self, modules: Sequence[tuple[str, nn.Module]]) -> None:
        self.names = [n for n, _ in modules]
        self.modules = [m for _, m in modules]
        self.recurrent = [i for i, m in enumerate(self.modules) if is_recurrent(m)]
        self._handles: list[Any] = []
        self._values: dict[int, list[torch.Tensor]] = {}
        self._grad_sq: dict[int, torch.Tensor] = {}
        self._time_grads: dict[int, torch.Tensor] = {}
        self._last_weight_layer: nn.Module | None = None
        self.execution_order: list[str] = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> None:
        """Register the hooks for the coming forward/backward."""
        if self._handles:
            return
        self._values.clear()
        self._grad_sq.clear()
        self._time_grads.clear()
        self.execution_order = []
        for index, module in enumerate(self.modules):
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))
        for index in self.recurrent:
            self._handles.append(self.modules[index].register_forward_pre_hook(self._time_pre_hook(index)))

    def remove(self) -> None:
        """Remove every hook this probe registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def collect(self, device: torch.device) -> torch.Tensor:
        """``[len(ACTIVATION_STATS), M]`` for the last forward/backward; NaN where not run."""
        nan = torch.tensor(float("nan"), device=device)
        columns = []
        for index in range(len(self.modules)):
            values = self._values.get(index)
            if values is None:
                columns.append(nan.expand(len(ACTIVATION_STATS)))
                continue
            grad_sq = self._grad_sq.get(index)
            grad = grad_sq.sqrt().to(device) if grad_sq is not None else nan
            columns.append(torch.stack([v.to(device) for v in values] + [grad]))
        if not columns:
            return torch.zeros(len(ACTIVATION_STATS), 0, device=device)
        return torch.stack(columns, dim=1)

    def time_gradients(self) -> dict[str, torch.Tensor]:
        """For each recurrent module reached by backward: the ``[T]`` norms of dLoss/dx_t."""
        return {self.names[i]: g for i, g in self._time_grads.items()}

    # -- hooks -----------------------------------------------------------------------
    def _forward_hook(self, index: int):
        module = self.modules[index]
        bounds = activation_bounds(module)
        relu_like = is_relu_family(module)

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if isinstance(mod, (nn.Linear, *_CONV, *_CHANNEL_NORMS)):
                self._last_weight_layer = mod
            tensor = first_float_tensor(output)
            if tensor is None:
                return
            if index not in self._values:
                self.execution_order.append(self.names[index])
            self._values[index] = self._output_stats(tensor.detach(), bounds, relu_like)
            if tensor.requires_grad:
                tensor.register_hook(self._grad_hook(index))

        return hook

    def _output_stats(self, y: torch.Tensor, bounds: tuple[float, float] | None, relu_like: bool) -> list[torch.Tensor]:
        yf = y.float()
        nan = torch.tensor(float("nan"), device=y.device)
        if yf.numel() == 0:
            return [nan, nan, nan, nan, torch.zeros((), device=y.device)]
        std, mean = torch.std_mean(yf, correction=0)
        saturated = nan
        if bounds is not None:
            lo, hi = bounds
            margin = SATURATION_MARGIN * (hi - lo)
            saturated = ((yf <= lo + margin) | (yf >= hi - margin)).float().mean()
        dead = nan
        if relu_like and yf.dim() >= 1:
            dead = self._dead_fraction(yf)
        nonfinite = torch.isfinite(yf).logical_not().sum().float()
        return [mean, std, saturated, dead, nonfinite]

    def _dead_fraction(self, y: torch.Tensor) -> torch.Tensor:
        unit_dim = y.dim() - 1
        conv_like = y.dim() >= 4 or (y.dim() == 3 and isinstance(self._last_weight_layer, (*_CONV, *_CHANNEL_NORMS)))
        if conv_like:
            unit_dim = 1
        other = [d for d in range(y.dim()) if d != unit_dim]
        alive = (y != 0).any(dim=other) if other else (y != 0)
        return 1.0 - alive.float().mean()

    def _grad_hook(self, index: int):
        def hook(grad: torch.Tensor) -> None:
            sq = grad.detach().float().square().sum()
            previous = self._grad_sq.get(index)
            self._grad_sq[index] = sq if previous is None else previous + sq

        return hook

    def _time_pre_hook(self, index: int):
        module = self.modules[index]
        time_dim = 1 if getattr(module, "batch_first", False) else 0

        def pre_hook(mod: nn.Module, args: tuple) -> tuple | None:
            if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
                return None
            x = args[0]
            if not torch.is_grad_enabled():
                return None
            dim = time_dim if x.dim() == 3 else 0
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
                args = (x, *args[1:])
            x.register_hook(self._time_grad_hook(index, dim))
            return args

        return pre_hook

    def _time_grad_hook(self, index: int, time_dim: int):
        def hook(grad: torch.Tensor) -> None:
            other = [d for d in range(grad.dim()) if d != time_dim]
            per_step = torch.linalg.vector_norm(grad.detach().float(), dim=other)
            self._time_grads[index] = per_step

        return hook
