"""dLoss/dx_t of recurrent modules: one value per time step, over every call, in call order.

A call runs a whole sequence when the module is ``nn.RNN/LSTM/GRU`` or another module
with a ``batch_first`` attribute (graddoctor's recurrent layers: ``[B, T, I]``,
``[T, B, I]`` or an unbatched ``[T, I]``), or when its input has 3 dims; it then gives
one value per time step, the L2 norm over batch and features of dLoss/dx_t. A cell's
call (``nn.RNNCell/LSTMCell/GRUCell``, or any module with a ``weight_hh`` called on a
1- or 2-dim input) is one time step: the L2 norm of dLoss/d(its input). The values of
all calls are concatenated in the order the calls ran; a call whose input gets no
gradient reads NaN (Pascanu, Mikolov & Bengio 2013: the decay over t is the vanishing
gradient over time). Squares are summed in float64 (``_output_stats.squared_norm``).

A hook that fails never raises into the forward or backward: the failure goes to
``on_error`` (the call then reads NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._output_stats import squared_norm
from .statistics import TIME_GRAD_NORM


def is_sequence_call(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether a call of recurrent ``module`` on ``x`` runs a sequence (else one time step)."""
    if isinstance(module, nn.RNNCellBase):
        return False
    return hasattr(module, "batch_first") or x.dim() == 3


class TimeGradients:
    """Per-call hooks on the inputs of recurrent modules, for one forward/backward.

    Args:
        on_error: called with ``(statistic, exception)`` when a hook fails (default: re-raise).
    """

    def __init__(self, on_error: Callable[[str, Exception], None] | None = None) -> None:
        # per module index, per call in call order: [time steps, sum of squares or None]
        self._calls: dict[int, list[list[Any]]] = {}
        self._on_error = on_error

    def _failed(self, err: Exception) -> None:
        if self._on_error is None:
            raise err
        self._on_error(TIME_GRAD_NORM, err)

    def clear(self) -> None:
        self._calls.clear()

    def pre_hook(self, index: int):
        """A forward pre-hook giving the call its own input tensor, hooked for its gradient.

        The input becomes ``x.view_as(x)`` (a leaf requiring grad when ``x`` does not),
        so a tensor fed to several calls gets each call's gradient, not their sum.
        """

        def pre_hook(mod: nn.Module, args: tuple) -> tuple | None:
            try:
                return hooked(mod, args)
            except Exception as err:  # the forward runs on, unhooked
                self._failed(err)
                return None

        def hooked(mod: nn.Module, args: tuple) -> tuple | None:
            if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
                return None
            if not torch.is_grad_enabled():
                return None
            x = args[0]
            time_dim = None
            if is_sequence_call(mod, x) and x.dim() >= 1:
                time_dim = 1 if x.dim() == 3 and getattr(mod, "batch_first", False) else 0
            slot = [1 if time_dim is None else x.shape[time_dim], None]
            self._calls.setdefault(index, []).append(slot)
            x = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
            x.register_hook(self._grad_hook(slot, time_dim))
            return (x, *args[1:])

        return pre_hook

    def _grad_hook(self, slot: list[Any], time_dim: int | None):
        def hook(grad: torch.Tensor) -> None:
            try:
                if time_dim is None:
                    sq = squared_norm(grad).reshape(1)
                else:
                    sq = squared_norm(grad, [d for d in range(grad.dim()) if d != time_dim])
                slot[1] = sq if slot[1] is None else slot[1] + sq
            except Exception as err:  # the backward runs on; this call reads NaN
                self._failed(err)

        return hook

    def result(self, names: list[str]) -> dict[str, torch.Tensor]:
        """For each module whose input got a gradient: its ``[T]`` norms over all calls."""
        out = {}
        for index, calls in self._calls.items():
            got = [sq for _, sq in calls if sq is not None]
            if not got:
                continue
            parts = [
                sq
                if sq is not None
                else torch.full((steps,), float("nan"), dtype=got[0].dtype, device=got[0].device)
                for steps, sq in calls
            ]
            out[names[index]] = torch.cat(parts).sqrt()
        return out


__all__ = ["TimeGradients", "is_sequence_call"]
