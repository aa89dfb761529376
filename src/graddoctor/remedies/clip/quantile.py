r"""AutoClip: clip to a percentile of the gradient norms seen so far.

Seetharaman, Wichern, Pardo & Le Roux (2020), "AutoClip: Adaptive Gradient Clipping for
Source Separation Networks".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

from graddoctor._foreach import group_by_device_and_dtype
from graddoctor.remedies.clip._gather import as_tensor_list, check_eps, check_norm_type, grads_of
from graddoctor.remedies.clip._norms import (
    DEFAULT_EPS,
    clip_coefficient,
    combine,
    group_norms,
    raise_nonfinite,
    scale_,
)

QUANTILE_POLICIES = ("raise", "skip", "zero")


class QuantileClipper:
    r"""Clip the total gradient norm to a quantile of its recent history (AutoClip).

    Seetharaman, Wichern, Pardo & Le Roux (2020), "AutoClip: Adaptive Gradient Clipping
    for Source Separation Networks". Each call measures :math:`\|g_t\|`, appends it to the
    history :math:`H` (the last ``history`` norms, a ring buffer kept on the CPU) and clips

    .. math::
        g_t \leftarrow g_t \cdot \min\Big(\frac{Q_q(H)}{\|g_t\| + \epsilon}, 1\Big),

    with :math:`Q_q` the ``quantile`` with linear interpolation (``numpy.percentile``'s
    default). The paper keeps every norm and found the 10th percentile (``quantile=0.1``)
    best for its networks; ``0.9`` only trims the largest tenth of steps. Reading the norm
    costs one device-to-host transfer per call. Non-finite norms are never recorded.

    Args:
        quantile: :math:`q \in (0, 1]`; 1 clips to the largest norm seen.
        history: how many recent norms to keep (at least 1).
        norm_type: :math:`p` of the norm, a positive number or ``"inf"`` (anything
            ``float()`` reads, as torch; ``p <= 0`` is not a norm and raises ``ValueError``).
        nonfinite: ``"raise"`` (``RuntimeError``), ``"skip"`` (gradients set to ``None`` so
            the optimizer step does nothing) or ``"zero"`` (non-finite entries zeroed first).
        eps: :math:`\epsilon`, added to the norm to avoid dividing by zero.

    Example:
        >>> clipper = QuantileClipper(quantile=0.9, history=1000)
        >>> loss.backward(); clipper(model.parameters()); optimizer.step()
    """

    def __init__(
        self,
        quantile: float = 0.9,
        history: int = 1000,
        norm_type: float = 2.0,
        nonfinite: str = "raise",
        eps: float = DEFAULT_EPS,
    ) -> None:
        if not isinstance(quantile, numbers.Real) or not 0 < quantile <= 1:
            raise ValueError(
                f"quantile must lie in (0, 1] (0.9 = the 90th percentile), got {quantile!r}"
            )
        if not isinstance(history, numbers.Integral) or isinstance(history, bool) or history < 1:
            raise ValueError(
                f"history must be an integer >= 1 (how many norms to keep), got {history!r}"
            )
        if nonfinite not in QUANTILE_POLICIES:
            raise ValueError(f"nonfinite must be one of {QUANTILE_POLICIES}, got {nonfinite!r}")
        self.quantile = float(quantile)
        self.history = int(history)
        self.norm_type = check_norm_type(norm_type)
        self.nonfinite = nonfinite
        self.eps = check_eps(eps)
        self._buffer = torch.zeros(self.history, dtype=torch.float64)
        self._count = 0  # norms recorded so far (the buffer holds the last min(count, history))

    @property
    def norms(self) -> list[float]:
        """The recorded norms, oldest first."""
        if self._count <= self.history:
            return self._buffer[: self._count].tolist()
        start = self._count % self.history
        return torch.cat([self._buffer[start:], self._buffer[:start]]).tolist()

    @property
    def threshold(self) -> float | None:
        """The current clipping threshold :math:`Q_q(H)`, ``None`` before the first call."""
        if self._count == 0:
            return None
        filled = self._buffer[: min(self._count, self.history)]
        return torch.quantile(filled, self.quantile).item()

    @torch.no_grad()
    def __call__(self, params: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
        """Record the gradients' norm and clip them to the quantile; return the norm (0-dim)."""
        params = as_tensor_list(params)
        grads = grads_of(params)
        if not grads:
            return torch.tensor(0.0)
        if self.nonfinite == "zero":
            for grad in grads:
                torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
        groups = group_by_device_and_dtype(grads)
        norm = combine(group_norms(groups, self.norm_type), grads[0].device, self.norm_type)
        norm_value = norm.item()  # the one host transfer per call
        if not math.isfinite(norm_value):
            if self.nonfinite != "skip":
                raise_nonfinite(self.norm_type, per_layer=False)
            for param in params:
                param.grad = None
            return norm
        self._buffer[self._count % self.history] = norm_value
        self._count += 1
        threshold = self.threshold
        scale_(groups, clip_coefficient(threshold, norm, self.eps))
        return norm

    def state_dict(self) -> dict[str, Any]:
        """Settings and recorded norms (plain Python values), for checkpoints."""
        return {
            "quantile": self.quantile,
            "history": self.history,
            "norm_type": self.norm_type,
            "nonfinite": self.nonfinite,
            "eps": self.eps,
            "norms": self.norms,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings and history from ``state_dict()``; the clipper then clips identically."""
        missing = {"quantile", "history", "norms"} - set(state)
        if missing:
            raise ValueError(f"not a QuantileClipper state_dict: missing keys {sorted(missing)}")
        restored = QuantileClipper(
            state["quantile"],
            state["history"],
            state.get("norm_type", 2.0),
            state.get("nonfinite", "raise"),
            state.get("eps", DEFAULT_EPS),
        )
        norms = list(state["norms"])[-restored.history :]
        restored._buffer[: len(norms)] = torch.tensor(norms, dtype=torch.float64)
        # stored oldest first at positions 0..n-1, so the next write replaces the oldest
        restored._count = len(norms)
        self.__dict__.update(restored.__dict__)

    def __repr__(self) -> str:
        return f"QuantileClipper(quantile={self.quantile}, history={self.history}, recorded={self._count})"
