"""Per-parameter statistics: gradients (before the step) and weights/updates (after).

Everything stays on the device: each measure returns one :class:`StatBlock` (a stacked
``[n_stats, n_params]`` tensor with named rows, the statistics declared in
``probes.statistics``; float32, float64 where a value needs it), NaN where a parameter
has no gradient this step.

Sharded parameters (FSDP2's DTensor, FSDP1's flat views) are measured on the part this
process holds; ``graddoctor.monitor.distributed`` combines the parts into global
statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._exact_norms import exact_norms, norm_floors, norms_in_range
from .._foreach import differences_norms, max_abs, nonfinite_counts, norms
from ._stat_block import StatBlock, ratio
from ._wrappers import named_parameters
from .statistics import GRAD_STATS, PARAMETER_STATS, WEIGHT_STATS


def trainable_parameters(model: nn.Module) -> tuple[list[str], list[nn.Parameter], list[str]]:
    """Trainable parameters by their first name (tied weights appear once) and frozen names.

    Names are the plain model's: wrapper components (FSDP1's ``_fsdp_wrapped_module``,
    ``_orig_mod``...) are left out; pass DDP's ``.module`` (``unwrap_model``) for DDP.
    """
    names, params, frozen = [], [], []
    for name, param in named_parameters(model):  # deduplicates shared tensors
        if param.requires_grad:
            names.append(name)
            params.append(param)
        else:
            frozen.append(name)
    return names, params, frozen


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a tensor this process holds: ``DTensor.to_local()``, else the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) and hasattr(tensor, "placements") else tensor


def _weight_block(
    weight_norm: torch.Tensor, update_norm: torch.Tensor, update_ratio: torch.Tensor
) -> StatBlock:
    return StatBlock.from_rows(
        {"weight_norm": weight_norm, "update_norm": update_norm, "update_ratio": update_ratio}
    )


def _itself(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class ParameterProbe:
    """Measures gradient, weight and update statistics of a fixed list of parameters.

    Args:
        params: the parameters, in the order of the recorded columns.
        track_updates: keep one scratch copy of the weights to measure the step's update.
    """

    def __init__(self, params: Sequence[nn.Parameter], *, track_updates: bool = True) -> None:
        self.params = list(params)
        self.track_updates = track_updates
        self._scratch: list[torch.Tensor] | None = None
        self._have_snapshot = False
        self.grad_present: list[bool] = [False] * len(self.params)
        # DTensor parameters (FSDP2) are read through their local shard
        self._local = local_part if any(hasattr(p, "placements") for p in self.params) else _itself
        self._floor_cache: tuple[tuple | None, torch.Tensor] | None = None
        self._last: tuple | None = None  # the last measured gradients, for grad_max()

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def measure_grads(self, with_max: bool = True) -> StatBlock:
        """``GRAD_STATS`` rows: L2 norm, max |g| and non-finite count of every gradient.

        Norms of finite gradients are exact across the float32 range: the fast fused norm
        is checked on the device against the tensor's size (and the max, for an all-zero
        tensor: :func:`graddoctor._exact_norms.norms_in_range`) and this flag is the step's one
        host sync. Only on a step where a norm is out of range are the non-finite entries
        counted and the norms of finite gradients that over- or underflowed recomputed
        (in float64, from the max). Rows are float32, or float64 when a gradient is
        float64 or a recomputed norm was needed.

        Args:
            with_max: also record ``grad_max`` (a second pass over the gradients, as costly
                as the norm; the Monitor's budget thins it with the weights).
        """
        with torch.no_grad():  # reads only: no graph, and no detached view per tensor
            return self._measure_grads(with_max)

    def _measure_grads(self, with_max: bool) -> StatBlock:
        grads = [p.grad for p in self.params]
        self.grad_present = [g is not None for g in grads]
        partial = not all(self.grad_present)
        present = [i for i, g in enumerate(grads) if g is not None] if partial else None
        names = GRAD_STATS if with_max else tuple(n for n in GRAD_STATS if n != "grad_max")
        if partial:
            if not present:
                self._last = None
                return StatBlock.filled(names, len(self.params), float("nan"), self.device)
            grads = [grads[i] for i in present]
        if self._local is not _itself:
            grads = [self._local(g) for g in grads]
        grad_norm = norms(grads, 2.0, self.device)
        floors = self._floors(present, grads)
        grad_max = max_abs(grads, self.device) if with_max else None
        if grad_max is None:  # an all-zero gradient reads out of range until its max says 0
            in_range = torch.isfinite(grad_norm) & (grad_norm >= floors)
        else:
            in_range = norms_in_range(grad_norm, grad_max, floors)
        # The step's one host sync. A norm in range proves every entry finite and the
        # fast norm exact: healthy steps skip the counting and recomputing passes.
        healthy = bool(in_range.all())
        if not healthy and grad_max is None:
            maxima = max_abs(grads, self.device)
            in_range = norms_in_range(grad_norm, maxima, floors)
            healthy = bool(in_range.all())
        else:
            maxima = grad_max
        self._last = (present, grads, maxima)  # for grad_max() of this step
        if healthy:
            counts = torch.zeros_like(grad_norm)
        else:
            counts = nonfinite_counts(grads, self.device)
            redo = ~in_range & torch.isfinite(maxima)
            grad_norm = exact_norms(grads, grad_norm, maxima, redo)
        rows = {"grad_norm": grad_norm, "grad_max": grad_max, "grad_nonfinite": counts}
        values = StatBlock.from_rows({name: rows[name] for name in names})
        if present is None:
            return values
        out = StatBlock(
            values.names,
            torch.full(
                (len(values), len(self.params)),
                float("nan"),
                dtype=values.values.dtype,
                device=self.device,
            ),
        )
        out.values[:, torch.tensor(present, device=self.device)] = values.values
        return out

    def grad_max(self) -> torch.Tensor:
        """The ``grad_max`` row (max |g| per parameter, NaN without a gradient) of the last
        :meth:`measure_grads`, measured now if that call did not (``with_max=False``)."""
        if self._last is None:
            return torch.full((len(self.params),), float("nan"), device=self.device)
        present, grads, maxima = self._last
        self._last = None  # the gradients are not kept past their step
        with torch.no_grad():
            maxima = max_abs(grads, self.device) if maxima is None else maxima
        if present is None:
            return maxima
        out = torch.full((len(self.params),), float("nan"), dtype=maxima.dtype, device=self.device)
        out[torch.tensor(present, device=self.device)] = maxima
        return out

    def _floors(self, present: list[int] | None, grads: list[torch.Tensor]) -> torch.Tensor:
        # a gradient has its parameter's size and dtype: one small host-to-device copy per
        # set of present gradients (None: all of them)
        key = None if present is None else tuple(present)
        if self._floor_cache is None or self._floor_cache[0] != key:
            self._floor_cache = (key, norm_floors(grads, self.device))
        return self._floor_cache[1]

    def snapshot(self) -> None:
        """Copy the weights before the optimizer step (into a reused scratch buffer)."""
        if not self.track_updates:
            return
        with torch.no_grad():
            weights = self._weights()
            if self._scratch is None or any(
                s.shape != w.shape for s, w in zip(self._scratch, weights, strict=True)
            ):
                self._scratch = [w.clone() for w in weights]
            else:
                try:
                    torch._foreach_copy_(self._scratch, weights)
                except (RuntimeError, AttributeError):
                    for s, w in zip(self._scratch, weights, strict=True):
                        s.copy_(w)
        self._have_snapshot = True

    def measure_weights(self, unchanged: bool = False) -> StatBlock:
        """``WEIGHT_STATS`` rows: weight norm after the step, update norm, and their ratio
        (NaN for a zero weight).

        These are the fast fused norms, with no range check (it would cost a second host
        sync per step): exact for float64 and complex128 parameters, and for float32 ones
        while a tensor's RMS is above 1e-16 and its norm below ~1.8e19 (the sum of squares
        stays a normal float32).

        Args:
            unchanged: the optimizer did not step (e.g. GradScaler skipped it): the update is 0.
        """
        with torch.no_grad():
            weights = self._weights()
            weight_norm = norms(weights, 2.0, self.device)
            if unchanged:
                self._have_snapshot = False
                zero = torch.zeros_like(weight_norm)
                return _weight_block(weight_norm, zero, ratio(zero, weight_norm))
            if not self._have_snapshot:
                nan = torch.full_like(weight_norm, float("nan"))
                return _weight_block(weight_norm, nan, nan)
            update_norm = differences_norms(weights, self._scratch, self.device)
            self._have_snapshot = False
            return _weight_block(weight_norm, update_norm, ratio(update_norm, weight_norm))

    def _weights(self) -> list[torch.Tensor]:
        """The parameters as plain tensors (their local shards), read under ``no_grad``."""
        if self._local is _itself:
            return self.params
        return [self._local(p.detach()) for p in self.params]

    def release(self) -> None:
        """Free the scratch copy of the weights."""
        self._scratch = None
        self._last = None
        self._have_snapshot = False


__all__ = [
    "GRAD_STATS",
    "PARAMETER_STATS",
    "WEIGHT_STATS",
    "ParameterProbe",
    "local_part",
    "trainable_parameters",
]
