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
  that are 0 for every sample of the batch (NaN for other modules). The unit axis is
  the output's own (``_output_stats.unit_dim``): the channels of a convolution or
  channel norm, the last dim of other weight layers and of LayerNorm / RMSNorm; a pool,
  dropout, Identity or elementwise module (output shaped like its input) keeps the axis
  of its input when that input is a monitored module's output of this forward; any
  other output: dim 1 with 4+ dims, else the last dim.
* ``act_nonfinite``: count of NaN/Inf outputs.
* ``act_max``: the largest magnitude of the output (NaN if any output is NaN): the
  headroom left before a half-precision overflow (fp16 holds at most 65504).
* ``out_grad_norm``: L2 norm of dLoss/dOutput.

A module called more than once in a step (a shared activation, a layer applied in a
loop) pools every statistic over all its calls: mean, standard deviation and saturated
fraction over the union of the calls' elements, non-finite counts summed,
``out_grad_norm`` in quadrature, and a unit dead only when it is 0 in every call (when
the calls differ in unit count: dead units of each call over the units of all calls).

Recurrent modules (``nn.RNNBase``, the RNN cells, any module with a ``weight_hh`` parameter) also
record ``time_grad_norm:<name>`` (``_time_gradients``): for a sequence call, the L2 norm
over batch and features of dLoss/dx_t for each time step t of its input; for a cell,
one value per call (= time step), the L2 norm of dLoss/d(its input); the calls
concatenated in call order. The decay over t is the vanishing gradient over time
(Pascanu, Mikolov & Bengio 2013).

A hook that fails (a tensor the statistics cannot handle, a bug) never raises into the
forward or backward: the module's statistics read NaN for the step and the failure is
kept in ``ActivationProbe.failures`` for the Monitor to report.

``select_modules(model)`` picks leaf modules and, besides, modules (other than the model
itself) holding parameters of their own: ``nn.MultiheadAttention`` runs its ``out_proj``
functionally, so only its own output has statistics.
"""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._module_types import is_rectifier, is_recurrent, saturation_bounds
from ._output_stats import PooledOutput, output_layout, squared_norm, unit_dim
from ._stat_block import StatBlock
from ._tensors import first_float_tensor
from ._time_gradients import TimeGradients
from ._wrappers import named_modules
from .statistics import ACTIVATION_STATS

OUTPUT_STATS = tuple(name for name in ACTIVATION_STATS if name != "out_grad_norm")


def select_modules(
    model: nn.Module, patterns: str | Sequence[str] = "leaf"
) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to monitor, in registration order.

    Args:
        model: the model.
        patterns: ``"leaf"`` (modules without children, and modules other than ``model``
            holding parameters of their own, such as ``nn.MultiheadAttention``), ``"all"``, or glob patterns
            matched against ``model.named_modules()`` names (e.g. ``["encoder.*", "head"]``).

    Names are those of the plain model: DDP's ``module.`` and FSDP1's
    ``_fsdp_wrapped_module.`` are left out (see ``probes._wrappers``).

    Raises:
        ValueError: a pattern matches no module (the message lists some names).
    """
    named = list(named_modules(model))
    if patterns == "leaf":
        return [(n, m) for n, m in named if _is_leaf(m) or (n and _holds_parameters(m))]
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


def _is_leaf(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def _holds_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


class ActivationProbe:
    """Forward/backward hooks on chosen modules for one recorded step at a time.

    Args:
        modules: the (name, module) pairs to measure.
        clock: times every hook's work (``start()`` / ``stop(token, label)``, as the
            Monitor's ``monitor._clock``), or None.
        label: what the clock counts the hooks' time as.
    """

    def __init__(
        self,
        modules: Sequence[tuple[str, nn.Module]],
        clock: Any = None,
        label: str = "activations",
    ) -> None:
        self.clock, self.label = clock, label
        self.names = [n for n, _ in modules]
        self.modules = [m for _, m in modules]
        self.recurrent = [i for i, m in enumerate(self.modules) if is_recurrent(m)]
        self._handles: list[Any] = []
        self._outputs: dict[int, PooledOutput] = {}
        self._grad_sq: dict[int, torch.Tensor] = {}
        self._times = TimeGradients(on_error=self._failed)
        self.failures: dict[str, Exception] = {}  # statistic -> its first failure, until taken
        self._broken: set[int] = set()  # modules whose forward hook failed this step
        # id(output) -> (weak ref to it, its unit dim), for the monitored outputs of this forward
        self._unit_dims: dict[int, tuple[weakref.ref, int]] = {}
        self.execution_order: list[str] = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> None:
        """Register the hooks for the coming forward/backward."""
        if self._handles:
            return
        self._outputs.clear()
        self._grad_sq.clear()
        self._times.clear()
        self._unit_dims.clear()
        self._broken.clear()
        self.execution_order = []
        for index, module in enumerate(self.modules):
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))
        for index in self.recurrent:
            self._handles.append(
                self.modules[index].register_forward_pre_hook(self._times.pre_hook(index))
            )

    def remove(self) -> None:
        """Remove every hook this probe registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._unit_dims.clear()

    def collect(self, device: torch.device) -> StatBlock:
        """``ACTIVATION_STATS`` rows of ``M`` columns for the last forward/backward; NaN where not run.

        float64 (float32 on MPS): gradient norms of float64 models keep their range.
        """
        dtype = torch.float32 if device.type == "mps" else torch.float64
        nan = torch.full((), float("nan"), dtype=dtype, device=device)
        columns = []
        for index in range(len(self.modules)):
            pooled = self._outputs.get(index)
            if pooled is None or index in self._broken:
                columns.append(nan.expand(len(ACTIVATION_STATS)))
                continue
            grad_sq = self._grad_sq.get(index)
            values = {
                **pooled.result(),
                "out_grad_norm": grad_sq.sqrt() if grad_sq is not None else nan,
            }
            columns.append(
                torch.stack([values[name].to(device, dtype) for name in ACTIVATION_STATS])
            )
        if not columns:
            empty = torch.zeros(len(ACTIVATION_STATS), 0, dtype=dtype, device=device)
            return StatBlock(ACTIVATION_STATS, empty)
        return StatBlock(ACTIVATION_STATS, torch.stack(columns, dim=1))

    def take_failures(self) -> dict[str, Exception]:
        """The statistics whose hooks failed since the last call, with their first error."""
        failures, self.failures = self.failures, {}
        return failures

    def _failed(self, statistic: str, err: Exception) -> None:
        self.failures.setdefault(statistic, err)

    def time_gradients(self) -> dict[str, torch.Tensor]:
        """For each recurrent module reached by backward: the ``[T]`` norms of dLoss/dx_t over its calls."""
        return self._times.result(self.names)

    # -- hooks -----------------------------------------------------------------------
    def _forward_hook(self, index: int):
        module = self.modules[index]
        bounds = saturation_bounds(module)
        rectifier = is_rectifier(module)
        layout = output_layout(module)

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            token = None if self.clock is None else self.clock.start()
            try:
                measure(mod, args, output)
            except Exception as err:  # the forward runs on; this module reads NaN this step
                self._broken.add(index)
                self._failed(", ".join(OUTPUT_STATS), err)
            if token is not None:
                self.clock.stop(token, self.label)

        def measure(mod: nn.Module, args: Any, output: Any) -> None:
            tensor = first_float_tensor(output)
            if tensor is None:
                return
            x = first_float_tensor(args)
            dim = unit_dim(mod, layout, x, tensor, self._unit_dim_of(x))
            self._unit_dims[id(tensor)] = (weakref.ref(tensor), dim)
            pooled = self._outputs.get(index)
            if pooled is None:
                self.execution_order.append(self.names[index])
                pooled = self._outputs[index] = PooledOutput(bounds, rectifier)
            pooled.add(tensor.detach(), dim)
            if tensor.requires_grad:
                tensor.register_hook(self._grad_hook(index))

        return hook

    def _unit_dim_of(self, x: torch.Tensor | None) -> int | None:
        """The unit dim of ``x`` if it is a monitored module's output of this forward."""
        if x is None:
            return None
        known = self._unit_dims.get(id(x))
        if known is None or known[0]() is not x:  # an id reused by a newer tensor
            return None
        return known[1]

    def _grad_hook(self, index: int):
        def hook(grad: torch.Tensor) -> None:
            token = None if self.clock is None else self.clock.start()
            try:
                sq = squared_norm(grad)
            except Exception as err:  # the backward runs on; out_grad_norm reads NaN
                sq = torch.full((), float("nan"), device=grad.device)
                self._failed("out_grad_norm", err)
            previous = self._grad_sq.get(index)
            self._grad_sq[index] = sq if previous is None else previous + sq
            if token is not None:
                self.clock.stop(token, self.label)

        return hook
