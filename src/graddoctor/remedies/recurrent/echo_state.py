r"""Echo state networks: a fixed random reservoir and a readout fitted in closed form.

No gradient ever flows through time: the input and recurrent weights are random and fixed
(buffers), the reservoir's spectral radius is set below 1 so that it forgets its initial
state (the echo-state property), and only the linear readout is learned, by ridge
regression on the collected states:

.. math::
    s_t = (1 - \lambda) s_{t-1} + \lambda \tanh(W_{in} u_t + W s_{t-1}), \qquad
    y_t = W_{out} [s_t; 1], \qquad
    W_{out} = Y^\top X (X^\top X + \beta I)^{-1}

Source: Jaeger (2001), "The echo state approach to analysing and training recurrent
neural networks"; Jaeger et al. (2007) for the leaking rate; Lukoševičius & Jaeger (2009);
Pascanu, Mikolov & Bengio (2013); Jefkine (2018), "Echo State Networks".
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EchoStateNetwork"]

READOUTS = ("last", "all")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class EchoStateNetwork(nn.Module):
    r"""An echo state network: fixed tanh reservoir, ridge-regression readout.

    .. math::
        s_t = (1 - \lambda) s_{t-1} + \lambda \tanh(W_{in} u_t + W s_{t-1}), \qquad
        \rho(W) = \max_j |\lambda_j(W)| = \text{spectral\_radius}

    ``W`` (buffer ``reservoir_weight``) is Gaussian, kept with probability ``density``, and
    rescaled to the requested spectral radius; ``W_in`` (buffer ``input_weight``) is
    uniform in ``[-input_scale, input_scale]``. Only ``readout`` (an ``nn.Linear``) holds
    parameters, set by :meth:`fit`. ``leak`` is the leaking *rate* :math:`\lambda` of
    Jaeger et al. (2007): 1 is a plain ESN, smaller is slower (the opposite convention to
    ``LeakyRNN``'s retained fraction). Source: Jaeger (2001); Jefkine (2018).

    Args:
        input_size: features per time step.
        reservoir_size: reservoir units.
        output_size: outputs of the readout.
        spectral_radius: :math:`\rho(W)`, in ``(0, 1)`` unless ``allow_unstable``.
        input_scale: half-width of the uniform input weights.
        leak: the leaking rate :math:`\lambda \in (0, 1]`.
        density: fraction of non-zero reservoir weights, in ``(0, 1]``.
        ridge: :math:`\beta \ge 0`, the ridge penalty of :meth:`fit`.
        readout: ``"last"`` (predict from the last state) or ``"all"`` (every step).
        allow_unstable: allow ``spectral_radius >= 1``.
        generator: a CPU ``torch.Generator`` for the random weights.
        device, dtype: of the buffers and the readout.
    """

    def __init__(
        self,
        input_size: int,
        reservoir_size: int,
        output_size: int,
        spectral_radius: float = 0.95,
        input_scale: float = 1.0,
        leak: float = 1.0,
        density: float = 1.0,
        ridge: float = 1e-6,
        readout: str = "last",
        allow_unstable: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.reservoir_size = _positive_int("reservoir_size", reservoir_size)
        self.output_size = _positive_int("output_size", output_size)
        spectral_radius, input_scale = float(spectral_radius), float(input_scale)
        leak, density, ridge = float(leak), float(density), float(ridge)
        if not (math.isfinite(spectral_radius) and spectral_radius > 0):
            raise ValueError(f"spectral_radius must be a finite number > 0, got {spectral_radius}")
        if spectral_radius >= 1 and not allow_unstable:
            raise ValueError(
                f"spectral_radius {spectral_radius} >= 1 may break the echo-state property (the "
                "reservoir need not forget its initial state): use a value < 1, or pass "
                "allow_unstable=True"
            )
        if not (math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f"input_scale must be a finite number > 0, got {input_scale}")
        if not 0 < leak <= 1:
            raise ValueError(f"leak (the leaking rate) must be in (0, 1], got {leak}")
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if not (math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.spectral_radius, self.input_scale = spectral_radius, input_scale
        self.leak, self.density, self.ridge, self.readout_mode = leak, density, ridge, readout
        dtype = dtype or torch.get_default_dtype()
        size = reservoir_size
        reservoir = torch.randn(size, size, generator=generator, dtype=torch.float64)
        if density < 1:
            reservoir = reservoir * (
                torch.rand(size, size, generator=generator, dtype=torch.float64) < density
            )
        radius = torch.linalg.eigvals(reservoir).abs().max()
        if not radius > 0:
            raise ValueError(
                f"the sampled reservoir has spectral radius 0 (density {density} is too low for "
                f"{size} units): raise density or reservoir_size"
            )
        reservoir = reservoir * (spectral_radius / radius)
        inputs = (
            torch.rand(size, input_size, generator=generator, dtype=torch.float64) * 2 - 1
        ) * input_scale
        self.register_buffer("reservoir_weight", reservoir.to(device=device, dtype=dtype))
        self.register_buffer("input_weight", inputs.to(device=device, dtype=dtype))
        self.readout = nn.Linear(size, output_size, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.reservoir_size}, {self.output_size}, "
            f"spectral_radius={self.spectral_radius}, leak={self.leak}, readout={self.readout_mode!r}"
        )

    def states(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        r"""The reservoir states :math:`s_1, \ldots, s_T` for batch-first inputs.

        Args:
            inputs: ``[B, T, input_size]``.
            hidden: the initial state ``[B, reservoir_size]`` (zeros when ``None``).

        Returns:
            ``[B, T, reservoir_size]``.
        """
        if (
            not isinstance(inputs, torch.Tensor)
            or inputs.dim() != 3
            or inputs.shape[-1] != self.input_size
        ):
            shape = (
                tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            )
            raise ValueError(
                f"EchoStateNetwork expects inputs [B, T, {self.input_size}], got {shape}"
            )
        batch = inputs.shape[0]
        state = inputs.new_zeros(batch, self.reservoir_size) if hidden is None else hidden
        if tuple(state.shape) != (batch, self.reservoir_size):
            raise ValueError(
                f"hidden must be [{batch}, {self.reservoir_size}], got {tuple(state.shape)}"
            )
        drive = inputs @ self.input_weight.T
        collected = []
        for step in range(inputs.shape[1]):
            update = torch.tanh(drive[:, step] + state @ self.reservoir_weight.T)
            state = update if self.leak == 1.0 else (1 - self.leak) * state + self.leak * update
            collected.append(state)
        return torch.stack(collected, dim=1)

    def _check_targets(self, inputs: torch.Tensor, targets: object, what: str = "targets") -> None:
        """Raise ValueError unless ``targets`` is ``[B, O]`` (``"last"``) or ``[B, T, O]`` (``"all"``)."""
        expected = (
            (inputs.shape[0], self.output_size)
            if self.readout_mode == "last"
            else (*inputs.shape[:2], self.output_size)
        )
        if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != expected:
            shape = (
                tuple(targets.shape)
                if isinstance(targets, torch.Tensor)
                else type(targets).__name__
            )
            raise ValueError(
                f"{what} must be {list(expected)} for readout={self.readout_mode!r}, got {shape}"
            )

    def _normal_equations(
        self, features: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`X^\top X` and :math:`X^\top Y` in float64, with :math:`X = [S, \mathbf{1}]`
        the states (over batch, and time for ``"all"``) and a bias column."""
        design = features.reshape(-1, self.reservoir_size).double()
        design = torch.cat([design, design.new_ones(design.shape[0], 1)], dim=1)
        wanted = targets.reshape(-1, self.output_size).double()
        return design.T @ design, design.T @ wanted

    def _solve_readout_(self, gram: torch.Tensor, cross: torch.Tensor) -> None:
        r"""Set the readout to :math:`[W_{out}, b_{out}] = \big((G + \beta I)^{-1} C\big)^\top`."""
        ridge = self.ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        solution = torch.linalg.solve(gram + ridge, cross).T  # [O, N + 1]
        self.readout.weight.copy_(solution[:, :-1])
        self.readout.bias.copy_(solution[:, -1])

    @torch.no_grad()
    def fit(
        self, inputs: torch.Tensor, targets: torch.Tensor, washout: int = 0
    ) -> EchoStateNetwork:
        r"""Fit the readout by ridge regression on the reservoir states (closed form).

        .. math::
            X = [S, \mathbf{1}], \qquad
            [W_{out}, b_{out}] = Y^\top X (X^\top X + \beta I)^{-1}

        The bias column is penalised like the weights (Lukoševičius & Jaeger 2009). Solved
        in float64.

        Args:
            inputs: ``[B, T, input_size]``.
            targets: ``[B, output_size]`` (``"last"``) or ``[B, T, output_size]`` (``"all"``).
            washout: initial steps left out of the fit (``"all"`` only), ``0 <= washout < T``.

        Returns:
            ``self``.
        """
        if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
            raise ValueError(f"washout must be an int >= 0, got {washout!r}")
        states = self.states(inputs)
        if washout >= states.shape[1]:
            raise ValueError(f"washout {washout} leaves no time step of {states.shape[1]} to fit")
        self._check_targets(inputs, targets)
        if self.readout_mode == "last":
            features, wanted = states[:, -1], targets
        else:
            features, wanted = states[:, washout:], targets[:, washout:]
        self._solve_readout_(*self._normal_equations(features, wanted))
        return self

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions: ``[B, output_size]`` (``"last"``) or ``[B, T, output_size]`` (``"all"``)."""
        states = self.states(inputs, hidden)
        return self.readout(states[:, -1] if self.readout_mode == "last" else states)
