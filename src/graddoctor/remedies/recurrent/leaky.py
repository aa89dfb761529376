r"""Leaky-integration units: some hidden units change slowly and carry gradients further.

.. math::
    h_{t,i} = \alpha_i h_{t-1,i} + (1 - \alpha_i)\, f(W_{ih} x_t + W_{hh} h_{t-1} + b)_i

with a fixed per-unit leak :math:`\alpha_i` drawn uniformly from ``(0.02, 0.2)``. The
Jacobian :math:`\partial h_t / \partial h_{t-1} = \operatorname{diag}(\alpha) +
\operatorname{diag}((1 - \alpha) f'(a_t)) W_{hh}` keeps a direct path of gain
:math:`\alpha_i` per unit, so gradients decay more slowly through time.

Source: Pascanu, Mikolov & Bengio (2013), sec. 3.2, after Bengio, Boulanger-Lewandowski &
Pascanu (2012), "Advances in optimizing recurrent networks" (Jefkine 2018, eq. 14);
Jaeger et al. (2007) for leaky-integrator neurons.
"""

from __future__ import annotations

import math

import torch

from graddoctor.remedies.recurrent.cells import RecurrentCore

__all__ = ["LeakyRNN"]


class LeakyRNN(RecurrentCore):
    r"""An Elman layer of leaky-integration units with fixed per-unit leaks.

    .. math::
        h_t = \alpha \odot h_{t-1} + (1 - \alpha) \odot f(W_{ih} x_t + W_{hh} h_{t-1} + b),
        \qquad \alpha_i \sim U(\text{leak\_range})

    :math:`\alpha = 0` is a plain Elman RNN. The leaks are a buffer ``leak`` (not trained).
    Same ``forward(inputs, hidden=None) -> (outputs, h_T)`` interface as
    :class:`~graddoctor.remedies.recurrent.ElmanRNN`.
    Source: Pascanu et al. (2013); Jefkine (2018) eq. 14; Bengio et al. (2012).

    Args:
        input_size: features per time step.
        hidden_size: units.
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"sigmoid"``.
        leak_range: ``(low, high)`` with ``0 <= low <= high < 1``; the paper's ``(0.02, 0.2)``.
        batch_first: inputs and outputs are ``[B, T, .]`` (default).
        generator: seeds the weights and the leaks.
        device, dtype: of the parameters and the leak buffer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        leak_range: tuple[float, float] = (0.02, 0.2),
        batch_first: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        try:
            low, high = (float(value) for value in leak_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"leak_range must be a pair (low, high) of floats, got {leak_range!r}"
            ) from None
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high < 1.0):
            raise ValueError(
                f"leak_range must satisfy 0 <= low <= high < 1 (a leak of 1 freezes the unit), "
                f"got {leak_range!r}"
            )
        super().__init__(
            input_size, hidden_size, nonlinearity, batch_first, generator, device, dtype
        )
        self.leak_range = (low, high)
        sample = torch.rand(hidden_size, generator=generator, dtype=self.weight_hh.dtype)
        leak = low + (high - low) * sample
        self.register_buffer("leak", leak.to(self.weight_hh.device))

    def leak_factor(self) -> torch.Tensor:
        return self.leak

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, leak_range={self.leak_range}"
