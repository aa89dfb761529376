r"""A module's output statistics, pooled over every call of one step, and the unit axis of an output.

Each call adds its output to a :class:`PooledOutput`, on the device, without a host sync.
Mean and variance combine the per-call moments (Chan, Golub & LeVeque 1979): for
calls :math:`a` and :math:`b` of :math:`n_a` and :math:`n_b` elements,

.. math::
    \delta = \bar y_b - \bar y_a, \quad
    \bar y = \bar y_a + \delta \frac{n_b}{n}, \quad
    M_2 = M_{2,a} + M_{2,b} + \delta^2 \frac{n_a n_b}{n},

so calls far from 0 lose no precision (no :math:`E[y^2] - E[y]^2`), in float32 on any device.

Sums of squares of gradients (``out_grad_norm``, ``time_grad_norm``) are accumulated in
float64 by :func:`squared_norm`: squared in float32, entries below ~1e-19 would read 0 and
entries above ~1.8e19 inf.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._module_types import SHAPE_PRESERVING_TYPES, module_families
from .._modules import NORMALIZATION, WEIGHT_LAYER

SATURATION_MARGIN = 0.01  # "within 1% of the bounds", as a fraction of the output range

# how a module places the units of its output
CONV = "conv"  # channels, before the kernel's spatial dims
CHANNELS = "channels"  # dim 1 (dim 0 unbatched): batch, instance, group, local response norms
LAST = "last"  # the last dim: other weight layers, LayerNorm / RMSNorm
KEEP = "keep"  # pools, dropout, Identity: their input's unit axis


def output_layout(module: nn.Module) -> str | None:
    """How ``module`` places the units of its output (``CONV``, ``CHANNELS``, ``LAST``,
    ``KEEP``), from the taxonomy; None when it sets no layout (activations, custom modules)."""
    families = module_families(module)
    if isinstance(module, nn.modules.conv._ConvNd):
        return CONV
    if WEIGHT_LAYER in families:
        return LAST
    if NORMALIZATION in families:
        return LAST if hasattr(module, "normalized_shape") else CHANNELS
    if isinstance(module, SHAPE_PRESERVING_TYPES):
        return KEEP
    return None


def unit_dim(
    module: nn.Module,
    layout: str | None,
    x: torch.Tensor | None,
    y: torch.Tensor,
    input_dim: int | None,
) -> int:
    """The dim of ``y`` (a call's output) whose entries are the units that can die.

    Args:
        module: the module called.
        layout: its :func:`output_layout`.
        x: the call's first floating input, if any.
        y: the call's output.
        input_dim: the unit dim of ``x`` when ``x`` is an output of a monitored module
            of this forward, else None.

    Returns:
        a convolution's channel dim; dim 1 for a channel norm (0 unbatched); the last dim
        for other weight layers and LayerNorm / RMSNorm; the input's unit dim for a pool,
        dropout or Identity, or a module whose output has its input's shape (an
        elementwise activation), when ``input_dim`` is known; else dim 1 for outputs of
        4+ dims and the last dim otherwise.
    """
    last = y.dim() - 1
    if layout == CONV:
        return max(y.dim() - len(module.kernel_size) - 1, 0)
    if layout == CHANNELS:
        no_batch = getattr(module, "_get_no_batch_dim", None)  # instance norms take [C, *]
        return 0 if no_batch is not None and y.dim() == no_batch() else min(1, last)
    if layout == LAST:
        return last
    keeps = layout == KEEP or (x is not None and x.shape == y.shape)
    if input_dim is not None and keeps and input_dim < y.dim():
        return input_dim
    return 1 if y.dim() >= 4 else last


def squared_norm(tensor: torch.Tensor, dim: list[int] | None = None) -> torch.Tensor:
    r"""The sum of squares :math:`\sum_j |x_j|^2` of a tensor, over ``dim`` or all of it.

    Accumulated in float64 (complex128 entries by magnitude), so float32 entries from
    ~1e-150 to ~1e150 neither underflow nor overflow; in float32 on MPS, which has no
    float64. Costs a transient float64 copy of ``tensor``; no host sync.

    Args:
        tensor: e.g. a gradient reaching a module's output.
        dim: the dims to reduce (None: every dim).

    Returns:
        float64 (MPS: float32) tensor on ``tensor``'s device, of the dims not reduced.
    """
    wide = torch.float32 if tensor.device.type == "mps" else torch.float64
    if tensor.is_complex():
        wide = torch.complex64 if wide == torch.float32 else torch.complex128
    return torch.linalg.vector_norm(tensor.detach(), 2, dim=dim, dtype=wide).square()


def saturated_count(y: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """How many entries of ``y`` lie within ``SATURATION_MARGIN`` of the range ``hi - lo`` of a bound.

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
    return near.sum()


class PooledOutput:
    """The statistics of every call's output of one module in one step, pooled.

    Args:
        bounds: a saturating activation's output range (``saturation_bounds``), else None.
        rectifier: count dead units (``is_rectifier``).
    """

    def __init__(self, bounds: tuple[float, float] | None, rectifier: bool) -> None:
        self.bounds = bounds
        self.rectifier = rectifier
        self.count = 0  # elements seen (a Python int: shapes are known on the host)
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None  # sum of squared deviations from the mean
        self.nonfinite: torch.Tensor | None = None
        self.biggest: torch.Tensor | None = None  # max |y| over the calls (NaN if any is NaN)
        self.saturated: torch.Tensor | None = None
        self.alive: torch.Tensor | None = None  # units nonzero in some call
        self.units = 0  # units over all calls
        self.alive_total: torch.Tensor | None = None  # alive units summed over calls
        self.same_units = True

    def add(self, y: torch.Tensor, dim: int) -> None:
        """Add one call's (detached) output ``y`` whose units lie along ``dim``."""
        yf = y.float()
        nonfinite = torch.isfinite(yf).logical_not().sum()
        self.nonfinite = nonfinite if self.nonfinite is None else self.nonfinite + nonfinite
        n = yf.numel()
        if n == 0:
            return
        low, high = torch.aminmax(yf)
        biggest = torch.maximum(low.neg(), high)
        self.biggest = biggest if self.biggest is None else torch.maximum(self.biggest, biggest)
        std, mean = torch.std_mean(yf, correction=0)
        m2 = std.square() * n
        if self.mean is None:
            self.mean, self.m2 = mean, m2
        else:
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count += n
        if self.bounds is not None:
            saturated = saturated_count(yf, *self.bounds)
            self.saturated = saturated if self.saturated is None else self.saturated + saturated
        if self.rectifier and yf.dim() >= 1:
            self._add_units(yf, dim)

    def _add_units(self, y: torch.Tensor, dim: int) -> None:
        other = [d for d in range(y.dim()) if d != dim]
        alive = (y != 0).any(dim=other) if other else (y != 0)
        count = alive.sum()
        self.alive_total = count if self.alive_total is None else self.alive_total + count
        self.units += alive.numel()
        if self.alive is None:
            self.alive = alive
        elif self.same_units and alive.shape == self.alive.shape:
            self.alive = self.alive | alive
        else:
            self.same_units = False

    def result(self) -> dict[str, torch.Tensor]:
        """``act_mean``, ``act_std``, ``act_saturated``, ``act_dead``, ``act_nonfinite``, ``act_max`` (0-d, float32)."""
        nan = torch.tensor(float("nan"), device=self.nonfinite.device)
        stats = {"act_mean": nan, "act_std": nan, "act_saturated": nan, "act_dead": nan}
        if self.count:
            stats["act_mean"] = self.mean
            stats["act_std"] = (self.m2 / self.count).clamp_min(0).sqrt()
            if self.saturated is not None:
                stats["act_saturated"] = self.saturated.float() / self.count
        if self.alive is not None:
            if self.same_units:  # a unit is dead when it is 0 in every call
                stats["act_dead"] = 1.0 - self.alive.float().mean()
            else:
                stats["act_dead"] = 1.0 - self.alive_total.float() / self.units
        stats["act_nonfinite"] = self.nonfinite.float()
        stats["act_max"] = nan if self.biggest is None else self.biggest
        return stats


__all__ = ["PooledOutput", "output_layout", "saturated_count", "squared_norm", "unit_dim"]
