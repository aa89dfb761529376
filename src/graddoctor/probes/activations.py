"""Per-module activation statistics from forward hooks, and the back-propagated signal.

Hooks are installed only for the steps the schedule picks and removed right after, so
an unscheduled step runs the model exactly as without graddoctor.

For each module (its output's first floating tensor), the ``"modules"`` statistics of
``probes.statistics``; which modules saturate or rectify is the taxonomy's
(``graddoctor._modules``):

* ``act_mean``, ``act_std``: mean and (population) standard deviation of the output.
* ``act_saturated``: for a saturating activation with bounds ``[lo, hi]``
  (``saturation_bounds``; ReLU6 is a rectifier, not saturating), the fraction of outputs
  within 1% of ``hi - lo`` of either bound; for LogSigmoid, ``(-inf, 0]``, within 0.01
  of 0 (NaN for other modules).
* ``act_dead``: for a rectifier (ReLU, ReLU6, a zero Threshold), the fraction of units
  that are 0 for every sample of the batch; a unit is a channel (dim 1) for outputs of
  4+ dims and for 3-dim outputs after a convolution or channel norm (``features_first``),
  else a feature of the last dimension (NaN for other modules).
* ``act_nonfinite``: count of NaN/Inf outputs.
* ``out_grad_norm``: L2 norm of dLoss/dOutput (summed in quadrature over calls).

Recurrent modules (``nn.RNNBase``, the RNN cells, any module with a ``weight_hh`` parameter) also
record ``time_grad_norm:<name>``: the L2 norm over batch and features of dLoss/dx_t
for each time step t of their input, the quantity whose decay over t is the vanishing
gradient over time (Pascanu, Mikolov & Bengio 2013).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._modules import (
    NORMALIZATION,
    WEIGHT_LAYER,
    is_rectifier,
    is_recurrent,
    module_families,
    saturation_bounds,
)
from ._tensors import first_float_tensor
from ._wrappers import named_modules
from .statistics import ACTIVATION_STATS, StatBlock

SATURATION_MARGIN = 0.01  # "within 1% of the bounds", as a fraction of the output range


def features_first(module: nn.Module) -> bool | None:
    """Whether a layer puts its features (channels) at dim 1 rather than last; None if it sets no layout.

    Convolutions and the batch, instance, group and local-response norms work on dim 1;
    other weight layers (Linear, recurrent...) and LayerNorm / RMSNorm (``normalized_shape``)
    on the trailing dims. Activations and other modules keep the layout of the layer before.
    """
    families = module_families(module)
    if WEIGHT_LAYER in families:
        return isinstance(module, nn.modules.conv._ConvNd)
    if NORMALIZATION in families:
        return not hasattr(module, "normalized_shape")
    return None


def saturated_fraction(y: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The fraction of ``y`` within ``SATURATION_MARGIN`` of the range ``hi - lo`` of a bound.

    A one-side bounded activation (LogSigmoid, ``(-inf, 0]``) counts outputs within
    ``SATURATION_MARGIN`` of its finite bound: there its derivative is below about 0.01.
    """
    span = hi - lo
    margin = SATURATION_MARGIN * span if math.isfinite(span) else SATURATION_MARGIN
    near = torch.zeros_like(y, dtype=torch.bool)
    if math.isfinite(lo):
        near |= y <= lo + margin
    if math.isfinite(hi):
        near |= y >= hi - margin
    return near.float().mean()


def select_modules(
    model: nn.Module, patterns: str | Sequence[str] = "leaf"
) -> list[tuple[str, nn.Module]]:
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
            raise ValueError(
                f"no module of {type(model).__name__} matches {pattern!r}; module names are e.g. {sample}"
            )
    for name, module in named:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            chosen.append((name, module))
    return chosen


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
        self._features_first = False  # the layout of the last weight or norm layer run
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
            self._handles.append(
                self.modules[index].register_forward_pre_hook(self._time_pre_hook(index))
            )

    def remove(self) -> None:
        """Remove every hook this probe registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def collect(self, device: torch.device) -> StatBlock:
        """``ACTIVATION_STATS`` rows of ``M`` columns for the last forward/backward; NaN where not run."""
        nan = torch.tensor(float("nan"), device=device)
        columns = []
        for index in range(len(self.modules)):
            values = self._values.get(index)
            if values is None:
                columns.append(nan.expand(len(ACTIVATION_STATS)))
                continue
            grad_sq = self._grad_sq.get(index)
            values = {**values, "out_grad_norm": grad_sq.sqrt() if grad_sq is not None else nan}
            columns.append(torch.stack([values[name].to(device) for name in ACTIVATION_STATS]))
        if not columns:
            return StatBlock(ACTIVATION_STATS, torch.zeros(len(ACTIVATION_STATS), 0, device=device))
        return StatBlock(ACTIVATION_STATS, torch.stack(columns, dim=1))

    def time_gradients(self) -> dict[str, torch.Tensor]:
        """For each recurrent module reached by backward: the ``[T]`` norms of dLoss/dx_t."""
        return {self.names[i]: g for i, g in self._time_grads.items()}

    # -- hooks -----------------------------------------------------------------------
    def _forward_hook(self, index: int):
        module = self.modules[index]
        bounds = saturation_bounds(module)
        rectifier = is_rectifier(module)
        layout = features_first(module)

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if layout is not None:
                self._features_first = layout
            tensor = first_float_tensor(output)
            if tensor is None:
                return
            if index not in self._values:
                self.execution_order.append(self.names[index])
            self._values[index] = self._output_stats(tensor.detach(), bounds, rectifier)
            if tensor.requires_grad:
                tensor.register_hook(self._grad_hook(index))

        return hook

    def _output_stats(
        self, y: torch.Tensor, bounds: tuple[float, float] | None, rectifier: bool
    ) -> dict[str, torch.Tensor]:
        """The output's statistics by name (all but ``out_grad_norm``, which backward adds)."""
        yf = y.float()
        nan = torch.tensor(float("nan"), device=y.device)
        if yf.numel() == 0:
            return {
                "act_mean": nan,
                "act_std": nan,
                "act_saturated": nan,
                "act_dead": nan,
                "act_nonfinite": torch.zeros((), device=y.device),
            }
        std, mean = torch.std_mean(yf, correction=0)
        saturated = nan if bounds is None else saturated_fraction(yf, *bounds)
        dead = self._dead_fraction(yf) if rectifier and yf.dim() >= 1 else nan
        nonfinite = torch.isfinite(yf).logical_not().sum().float()
        return {
            "act_mean": mean,
            "act_std": std,
            "act_saturated": saturated,
            "act_dead": dead,
            "act_nonfinite": nonfinite,
        }

    def _dead_fraction(self, y: torch.Tensor) -> torch.Tensor:
        unit_dim = y.dim() - 1
        if y.dim() >= 4 or (y.dim() == 3 and self._features_first):
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
