r"""Elman recurrent layers whose weights, hidden states and pre-activations can be reached.

:class:`ElmanRNN` computes the same function as a one-layer ``torch.nn.RNN`` but keeps
one bias and plain parameter names (``weight_ih``, ``weight_hh``, ``bias``), and can hand
back every hidden state and pre-activation of a forward pass (a :class:`RecurrentTrace`),
which the vanishing-gradient regulariser :math:`\Omega` needs.

Source: Elman (1990), "Finding structure in time"; Pascanu, Mikolov & Bengio (2013), "On
the difficulty of training recurrent neural networks", eq. 2a in Jefkine's (2018) write-up.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

NONLINEARITIES = ("tanh", "relu", "sigmoid")


def activate(preactivation: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """Apply ``tanh``, ``relu`` or ``sigmoid``."""
    if nonlinearity == "tanh":
        return torch.tanh(preactivation)
    if nonlinearity == "relu":
        return torch.relu(preactivation)
    return torch.sigmoid(preactivation)


def activation_derivative(preactivation: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    r""":math:`f'(a)` elementwise: :math:`1 - \tanh^2 a`, :math:`[a > 0]` or :math:`\sigma(a)(1 - \sigma(a))`."""
    if nonlinearity == "tanh":
        return 1.0 - torch.tanh(preactivation).square()
    if nonlinearity == "relu":
        return (preactivation > 0).to(preactivation.dtype)
    sigma = torch.sigmoid(preactivation)
    return sigma * (1.0 - sigma)


@dataclass
class RecurrentTrace:
    r"""Everything one forward pass of a graddoctor recurrent layer computed, batch-major.

    Attributes:
        module: the layer that ran.
        hidden_states: ``[h_0, h_1, ..., h_T]``, each ``[B, H]``; ``h_1..h_T`` are the very
            tensors of the autograd graph, so ``torch.autograd.grad(loss, hidden_states[1:])``
            gives the total derivatives :math:`\partial E / \partial h_k`.
        preactivations: ``[a_1, ..., a_T]`` with :math:`a_t = W_{ih} x_t + W_{hh} h_{t-1} + b`.
        leak: the per-unit leak :math:`\alpha` of a :class:`~graddoctor.remedies.recurrent.leaky.LeakyRNN`,
            ``None`` for a plain Elman layer.
    """

    module: nn.Module
    hidden_states: list[torch.Tensor]
    preactivations: list[torch.Tensor]
    leak: torch.Tensor | None


class RecurrentCore(nn.Module):
    r"""Base of graddoctor's one-layer recurrent layers (Elman and leaky-integration).

    .. math::
        a_t = W_{ih} x_t + W_{hh} h_{t-1} + b, \qquad
        h_t = \alpha \odot h_{t-1} + (1 - \alpha) \odot f(a_t)

    with :math:`\alpha = 0` for a plain Elman layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        batch_first: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity
        self.batch_first = bool(batch_first)
        self.num_layers = 1
        self.bidirectional = False
        self.dropout = 0.0
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **factory))
        self.bias = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        r"""PyTorch's RNN default: every weight :math:`\sim U(-1/\sqrt{H}, 1/\sqrt{H})`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in (self.weight_ih, self.weight_hh, self.bias):
                sample = torch.rand(weight.shape, generator=generator, dtype=weight.dtype)
                weight.copy_(sample.mul_(2 * bound).sub_(bound))

    def leak_factor(self) -> torch.Tensor | None:
        """The per-unit leak :math:`\\alpha` (``None``: no leak)."""
        return None

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}, "
            f"batch_first={self.batch_first}"
        )

    def _initial_state(
        self, hidden: torch.Tensor | None, batch: int, like: torch.Tensor
    ) -> torch.Tensor:
        if hidden is None:
            return like.new_zeros(batch, self.hidden_size)
        if not isinstance(hidden, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__} hidden must be a tensor [B, H] or [1, B, H], "
                f"got {type(hidden).__name__}"
            )
        state = hidden[0] if hidden.dim() == 3 and hidden.shape[0] == 1 else hidden
        if tuple(state.shape) != (batch, self.hidden_size):
            raise ValueError(
                f"{type(self).__name__} hidden has shape {tuple(hidden.shape)}; expected "
                f"[{batch}, {self.hidden_size}] or [1, {batch}, {self.hidden_size}]"
            )
        return state

    def forward(
        self, inputs: torch.Tensor, hidden: torch.Tensor | None = None, return_trace: bool = False
    ):
        r"""Run the recurrence over a sequence.

        Args:
            inputs: ``[B, T, I]`` (``batch_first``), ``[T, B, I]`` otherwise, or an
                unbatched ``[T, I]``.
            hidden: the initial state ``[B, H]`` or ``[1, B, H]`` (``nn.RNN``'s layout);
                zeros when ``None``.
            return_trace: also return the :class:`RecurrentTrace`.

        Returns:
            ``(outputs, h_T)``: outputs ``[B, T, H]`` (same layout as ``inputs``) and the
            last state ``[1, B, H]`` like ``nn.RNN`` (``[1, H]`` unbatched); with
            ``return_trace``, ``(outputs, h_T, trace)``.
        """
        if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (2, 3):
            shape = (
                tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            )
            raise ValueError(
                f"{type(self).__name__} expects inputs [B, T, I] or [T, I], got {shape}"
            )
        if inputs.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} has input_size {self.input_size} but the inputs' last "
                f"dimension is {inputs.shape[-1]}"
            )
        unbatched = inputs.dim() == 2
        batch_major = inputs.unsqueeze(0) if unbatched else inputs
        if not unbatched and not self.batch_first:
            batch_major = batch_major.transpose(0, 1)
        if unbatched and hidden is not None and hidden.dim() <= 2:
            hidden = hidden.reshape(1, -1)
        state = self._initial_state(hidden, batch_major.shape[0], batch_major)
        leak = self.leak_factor()
        drive = torch.nn.functional.linear(batch_major, self.weight_ih, self.bias)
        states, preactivations = [state], []
        for step in range(batch_major.shape[1]):
            preactivation = drive[:, step] + state @ self.weight_hh.T
            update = activate(preactivation, self.nonlinearity)
            state = update if leak is None else leak * state + (1.0 - leak) * update
            states.append(state)
            preactivations.append(preactivation)
        outputs = (
            torch.stack(states[1:], dim=1)
            if preactivations
            else batch_major.new_zeros(batch_major.shape[0], 0, self.hidden_size)
        )
        trace = RecurrentTrace(self, states, preactivations, leak)
        for sink in _active_sinks(self):
            sink.append(trace)
        last = state.unsqueeze(0)
        if unbatched:
            outputs, last = outputs[0], last[:, 0]
        elif not self.batch_first:
            outputs = outputs.transpose(0, 1)
        return (outputs, last, trace) if return_trace else (outputs, last)


class ElmanRNN(RecurrentCore):
    r"""A one-layer Elman RNN with reachable weights, states and pre-activations.

    .. math::
        h_t = f(W_{ih} x_t + W_{hh} h_{t-1} + b), \qquad f \in \{\tanh, \mathrm{relu}, \sigma\}

    Equals ``torch.nn.RNN(input_size, hidden_size, nonlinearity)`` with
    ``bias = bias_ih + bias_hh``. Source: Elman (1990); Pascanu et al. (2013), eq. 2a in
    Jefkine (2018).

    Args:
        input_size: features per time step.
        hidden_size: units.
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"sigmoid"``.
        batch_first: inputs and outputs are ``[B, T, .]`` (default) rather than ``[T, B, .]``.
        generator: seeds the ``U(-1/sqrt(H), 1/sqrt(H))`` initialisation.
        device, dtype: of the parameters.
    """


_SINKS: dict[int, list[list[RecurrentTrace]]] = {}


def _active_sinks(module: nn.Module) -> list[list[RecurrentTrace]]:
    return _SINKS.get(id(module), [])


@contextlib.contextmanager
def record_recurrent_traces(model: nn.Module) -> Iterator[list[RecurrentTrace]]:
    """Collect the :class:`RecurrentTrace` of every graddoctor recurrent layer run inside.

    The model is not changed (the registry lives outside it); nested use is allowed.

    Args:
        model: a module containing :class:`ElmanRNN` / ``LeakyRNN`` layers.

    Yields:
        a list that receives one trace per layer call, in call order.
    """
    traces: list[RecurrentTrace] = []
    cores = [module for module in model.modules() if isinstance(module, RecurrentCore)]
    for core in cores:
        _SINKS.setdefault(id(core), []).append(traces)
    try:
        yield traces
    finally:
        for core in cores:
            sinks = _SINKS.get(id(core), [])
            for index, sink in enumerate(sinks):
                if sink is traces:
                    del sinks[index]
                    break
            if not sinks:
                _SINKS.pop(id(core), None)
