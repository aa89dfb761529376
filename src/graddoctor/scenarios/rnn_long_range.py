r"""A tanh RNN on a long-range task: gradients through time vanish or explode (Pascanu et al. 2013).

Claim (Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
networks", ICML 2013, sec. 2; written up by Jefkine 2018, "Vanishing And Exploding Gradient
Problems", eq. 7-12): the gradient
reaching time step :math:`k` from the loss at :math:`T` goes through

.. math:: \frac{\partial h_T}{\partial h_k} = \prod_{i=k+1}^{T} \operatorname{diag}(f'(a_i)) W_{hh},
    \qquad \left\| \frac{\partial h_T}{\partial h_k} \right\| \le (\gamma_W \gamma_f)^{T-k},

so with a recurrent spectral radius below 1 the first inputs get exponentially small
gradients (vanishing), and above 1 they can get exponentially large ones (exploding).
Gated units (LSTM, Hochreiter & Schmidhuber 1997) keep an additive memory path and lose
the signal far more slowly.

Here: sequences of :math:`T = 40` standard normal steps, target = the first step's
value (read out after the last step), a fresh batch of 32 at each of the 80 Adam steps
(lr 0.003), so the loss is measured on unseen sequences and falls only if the first step
is recalled; a 32-unit tanh :class:`~graddoctor.remedies.recurrent.ElmanRNN` with
PyTorch's default init (spectral radius about 0.6); variant ``"radius>1"`` rescales
:math:`W_{hh}` to spectral radius 3; variant ``"lstm"`` is a 32-unit LSTM with forget-gate
bias 1 (Gers et al. 2000). :func:`time_step_gradient_norms` measures
:math:`\|\partial L / \partial x_t\|`.

Measured (seed 0, final MSE = mean of the last 8 steps; predicting 0 scores 1): the tanh
RNN stays at 0.93, as does the LSTM with forget-gate bias 1; the diagnosis' first remedy,
``lstm`` (a fresh LSTM whose forget gate starts at bias 3, memory time constant ~21
steps, see :func:`~graddoctor.remedies.recurrent.set_forget_bias_`), reaches 0.61
(seeds 0-4: 0.44-0.61 against 0.86-1.36). With SGD nothing learns the recall in a few
hundred steps, and with PyTorch's default forget bias (about 0) neither does the LSTM.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies.recurrent import ElmanRNN, SequenceModel
from graddoctor.scenarios._base import (
    Scenario,
    adam,
    check_seed,
    generator,
    linear,
    split_batches,
    uniform_fan_in_,
)
from graddoctor.theory import spectral_radius

NAME = "rnn-long-range"
SEQUENCE_LENGTH = 40
HIDDEN = 32
BATCH_SIZE = 32
STEPS = 80
# a fresh batch at every step: the loss is measured on sequences never seen before, so
# it falls only when the first step is recalled, not when a few sequences are memorised
N_SEQUENCES = STEPS * BATCH_SIZE
EXPLODING_RADIUS = 3.0
LR = 0.003


def first_step_recall(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[2560, 40, 1]`` of standard normal steps; targets ``[2560, 1]`` = the first step."""
    inputs = torch.randn(N_SEQUENCES, SEQUENCE_LENGTH, 1, generator=generator(seed, stream=0))
    return inputs, inputs[:, 0].clone()


def _uniform_lstm(gen: torch.Generator) -> nn.LSTM:
    with torch.random.fork_rng(devices=[]):
        lstm = nn.LSTM(1, HIDDEN, batch_first=True)
    bound = 1.0 / math.sqrt(HIDDEN)
    with torch.no_grad():
        for parameter in lstm.parameters():
            parameter.uniform_(-bound, bound, generator=gen)
        # gate order i, f, g, o: forget-gate bias 1 in total (Gers, Schmidhuber & Cummins 2000)
        lstm.bias_ih_l0[HIDDEN : 2 * HIDDEN].fill_(1.0)
        lstm.bias_hh_l0[HIDDEN : 2 * HIDDEN].zero_()
    return lstm


def rnn_problem(seed: int = 0, core: str = "rnn", radius: float | None = None) -> Problem:
    """The recall task with a tanh Elman RNN (``core="rnn"``) or an LSTM (``core="lstm"``).

    ``radius`` rescales the Elman layer's :math:`W_{hh}` to that spectral radius
    (``None``: PyTorch's default init, radius about 0.6).
    """
    seed = check_seed(seed)
    if core not in ("rnn", "lstm"):
        raise ValueError(f"core must be 'rnn' or 'lstm', got {core!r}")
    if radius is not None and core != "rnn":
        raise ValueError("radius applies to the Elman RNN only (core='rnn')")
    inputs, targets = first_step_recall(seed)
    gen = generator(seed, stream=1)
    if core == "rnn":
        recurrent = ElmanRNN(1, HIDDEN, nonlinearity="tanh", generator=gen)
        if radius is not None:
            with torch.no_grad():
                recurrent.weight_hh.mul_(radius / spectral_radius(recurrent.weight_hh))
    else:
        recurrent = _uniform_lstm(gen)
    head = linear(HIDDEN, 1, uniform_fan_in_, None, gen)
    label = core if radius is None else f"{core}-radius={radius:g}"
    return Problem(
        model=SequenceModel(recurrent, head),
        data=split_batches(inputs, targets, BATCH_SIZE),
        loss_fn=nn.MSELoss(),
        optimizer=adam(LR),
        name=f"{NAME}-{label}",
        notes={
            "optimizer": "adam",
            "lr": LR,
            "core": core,
            "radius": radius,
            "sequence_length": SEQUENCE_LENGTH,
        },
    )


def time_step_gradient_norms(
    problem: Problem, batch: tuple[torch.Tensor, torch.Tensor] | None = None
) -> np.ndarray:
    r"""Norm of the loss gradient with respect to each time step's input.

    .. math:: g_t = \left\| \frac{\partial L}{\partial x_t} \right\|_F, \qquad t = 1..T

    Args:
        problem: a sequence problem with batch-first inputs ``[B, T, I]``.
        batch: ``(inputs, targets)``; default the problem's first batch.

    Returns:
        float64 array ``[T]``, the first time step first.
    """
    inputs, targets = problem.take(1)[0] if batch is None else batch
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(
            f"time_step_gradient_norms needs batch-first inputs [B, T, I], got {shape}"
        )
    inputs = inputs.detach().clone().requires_grad_(True)
    loss = problem.loss_fn(problem.model(inputs), targets)
    (grad,) = torch.autograd.grad(loss, inputs)
    return grad.square().sum(dim=(0, 2)).sqrt().double().numpy()


def build(seed: int = 0) -> Scenario:
    """The rnn-long-range scenario: radius < 1 baseline; variants ``"radius>1"`` and ``"lstm"``."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="Vanishing / exploding gradients through time in a tanh RNN recalling its first input",
        claim=(
            "With recurrent spectral radius below 1 the gradient reaching the first of 40 time "
            "steps is many orders of magnitude smaller than the last step's (vanishing) and the "
            "tanh RNN does not learn to recall that step; with radius 3 the gradient is orders "
            "of magnitude larger (exploding); an LSTM with forget-gate bias 1 loses it far more "
            "slowly, and one whose forget gate starts at bias 3 learns the recall."
        ),
        source="Pascanu, Mikolov & Bengio, On the difficulty of training recurrent neural networks, ICML 2013",
        baseline=rnn_problem(seed),
        variants={
            "radius>1": rnn_problem(seed, radius=EXPLODING_RADIUS),
            "lstm": rnn_problem(seed, core="lstm"),
        },
        remedies=[
            "clip_norm",
            "init_orthogonal",
            "lstm",
            "gru",
            "leaky_units",
            "vanishing_regularizer",
            "echo_state",
            "tbptt",
        ],
        steps=STEPS,
        expected_findings={
            "baseline": ["vanishing_gradients"],
            "radius>1": ["exploding_gradients"],
            # the LSTM's first/last gradient ratio (~3e-4 over 40 steps) is 1e5x the tanh RNN's
            # but still under the 1e-3 of `vanishing_gradients`: the diagnosis says so
            "lstm": ["vanishing_gradients"],
        },
        seed=seed,
    )
