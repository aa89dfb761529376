r"""Pascanu's vanishing-gradient regulariser :math:`\Omega`: keep :math:`\|\partial E/\partial h\|` constant through time.

:math:`\Omega` asks each one-step Jacobian to preserve the norm of the error signal in the
direction that signal actually has:

.. math::
    \Omega = \sum_k \Omega_k = \sum_k \left(
    \frac{\left\| \frac{\partial E}{\partial h_{k+1}} \frac{\partial h_{k+1}}{\partial h_k} \right\|}
         {\left\| \frac{\partial E}{\partial h_{k+1}} \right\|} - 1 \right)^2

The error signal :math:`\partial E / \partial h_{k+1}` comes from a first backward pass
and is a constant; the gradient of :math:`\Omega` flows into :math:`W_{hh}`.

Parameterisation. graddoctor's layers compute :math:`a_{k+1} = W_{ih} x_{k+1} + W_{hh}
h_k + b`, :math:`h_{k+1} = f(a_{k+1})` (leaky: :math:`h_{k+1} = \alpha h_k + (1 - \alpha)
f(a_{k+1})`), so the row vector is

.. math::
    g_{k+1} \frac{\partial h_{k+1}}{\partial h_k}
    = (g_{k+1} \odot f'(a_{k+1})) W_{hh} \;[+\; g_{k+1} \odot \alpha],
    \qquad g_{k+1} = \partial E / \partial h_{k+1}

(``form="hidden"``, the default, :math:`k = 0..T-1`). The paper (and Jefkine 2018, eq. 16)
writes the same product in the parameterisation :math:`x_{k+1} = W_{hh} f(x_k) + W_{ih}
u_{k+1} + b` whose state is our pre-activation :math:`x_k = a_k`; there the Jacobian is
:math:`W_{hh} \operatorname{diag}(f'(x_k))` and the row vector
:math:`(\partial E/\partial x_{k+1}) W_{hh} \operatorname{diag}(f'(x_k))` with
:math:`\partial E/\partial x_{k+1} = g_{k+1} \odot f'(a_{k+1})` (``form="preactivation"``,
:math:`k = 1..T-1`, Elman layers only). Jefkine's :math:`W^\top` is the transposed
(column-vector) way of writing the same product.

Gradient. Like the paper, which takes :math:`\partial E/\partial x_{k+1}` *and*
:math:`x_k` as constants when differentiating :math:`\Omega_k` (its :math:`\partial^+`),
the default differentiates only the explicit :math:`W_{hh}`: the :math:`f'` factors are
detached. ``differentiate_activations=True`` lets the gradient also flow through
:math:`f'(a)` (into :math:`W_{hh}`, :math:`W_{ih}`, :math:`b` and earlier states).

Source: Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
networks", ICML, sec. 3.3, eq. 9-10 (Jefkine 2018, eq. 15-16).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.problem import Problem, StepFunction, backward_and_step
from graddoctor.remedies.recurrent.cells import (
    RecurrentTrace,
    activation_derivative,
    record_recurrent_traces,
)
from graddoctor.remedies.recurrent.model import no_recurrent_module_error

__all__ = ["omega_step", "vanishing_gradient_regularizer"]

FORMS = ("hidden", "preactivation")
_TINY = 1e-30


def vanishing_gradient_regularizer(
    trace: RecurrentTrace,
    state_grads: list[torch.Tensor | None],
    form: str = "hidden",
    differentiate_activations: bool = False,
) -> torch.Tensor:
    r"""Pascanu's :math:`\Omega` for one recorded pass of an Elman / leaky layer.

    .. math::
        \Omega = \frac{1}{B} \sum_{b=1}^{B} \sum_k
        \left( \frac{\| g_{k+1} \,\partial h_{k+1} / \partial h_k \|}{\| g_{k+1} \|} - 1 \right)^2

    (see the module docstring for both forms). Terms whose error signal is exactly zero
    are left out. Source: Pascanu, Mikolov & Bengio (2013), eq. 9-10 (Jefkine 2018, eq. 15-16).

    Args:
        trace: from ``layer(x, return_trace=True)`` or :func:`record_recurrent_traces`.
        state_grads: :math:`\partial E / \partial h_1, \ldots, \partial E / \partial h_T`
            (``[B, H]`` each, ``None`` for a state the loss does not use), e.g.
            ``torch.autograd.grad(loss, trace.hidden_states[1:], allow_unused=True)``;
            detached here.
        form: ``"hidden"`` (Jacobians of :math:`h`) or ``"preactivation"`` (the paper's
            state :math:`x = a`; Elman layers only).
        differentiate_activations: let the gradient flow through the :math:`f'` factors.

    Returns:
        the scalar :math:`\Omega` (mean over the batch of the sum over time steps).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    steps = len(trace.preactivations)
    if len(state_grads) != steps:
        raise ValueError(
            f"state_grads must hold one gradient per time step ({steps}), got {len(state_grads)}"
        )
    module = trace.module
    weight = module.weight_hh
    if steps == 0 or (form == "preactivation" and steps < 2):
        return weight.new_zeros(())
    preactivations = torch.stack(trace.preactivations)  # [T, B, H]
    grads = torch.stack(
        [
            torch.zeros_like(pre) if grad is None else grad.detach()
            for grad, pre in zip(state_grads, trace.preactivations)
        ]
    ).to(preactivations.dtype)
    slopes = activation_derivative(preactivations, module.nonlinearity)
    if not differentiate_activations:
        slopes = slopes.detach()
    if form == "hidden":
        leak = trace.leak
        gated = grads * slopes if leak is None else grads * slopes * (1.0 - leak)
        carried = gated @ weight
        if leak is not None:
            carried = carried + grads * leak
        signal = grads
    else:
        if trace.leak is not None:
            raise ValueError(
                "form='preactivation' is the paper's x_k = W f(x_{k-1}) + ... parameterisation, "
                "which a leaky layer does not have: use form='hidden'"
            )
        signal = grads[1:] * slopes[1:].detach()  # dE/da_{k+1}, constant, k = 1..T-1
        carried = (signal @ weight) * slopes[:-1]
    signal_norm = torch.linalg.vector_norm(signal, dim=-1)
    alive = signal_norm > _TINY
    ratio = torch.linalg.vector_norm(carried, dim=-1) / torch.where(alive, signal_norm, 1.0)
    terms = torch.where(alive, (ratio - 1.0).square(), 0.0)
    return terms.sum(dim=0).mean()


def omega_step(
    strength: float = 1.0, form: str = "hidden", differentiate_activations: bool = False
) -> StepFunction:
    r"""A ``Problem.step_fn`` minimising :math:`E + \lambda\,\Omega`.

    One step: forward with the graddoctor recurrent layers recording their states; the
    task loss :math:`E`; :math:`g_k = \partial E / \partial h_k` by ``torch.autograd.grad``
    (graph retained); :math:`\Omega` per layer call from those constant :math:`g_k`
    (:func:`vanishing_gradient_regularizer`); backward of
    :math:`E + \text{penalties} + \lambda \sum \Omega`; the problem's grad transforms;
    ``optimizer.step()``. The error signal is that of the task loss alone.
    Source: Pascanu, Mikolov & Bengio (2013), sec. 3.3 (Jefkine 2018, eq. 15-16).

    Args:
        strength: :math:`\lambda \ge 0`.
        form: see :func:`vanishing_gradient_regularizer`.
        differentiate_activations: see :func:`vanishing_gradient_regularizer`.

    Returns:
        ``step_fn(problem, model, optimizer, batch) -> loss`` (the total, detached). The
        model must contain :class:`ElmanRNN` or ``LeakyRNN`` layers (their states are what
        :math:`\Omega` reads; swap an ``nn.RNN`` for an ``ElmanRNN`` to use it).
    """
    strength = float(strength)
    if not strength >= 0 or strength == float("inf"):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")

    def step_fn(
        problem: Problem, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any
    ) -> torch.Tensor:
        inputs, targets = batch
        optimizer.zero_grad(set_to_none=True)
        with record_recurrent_traces(model) as traces:
            outputs = model(inputs)
        if not traces:
            raise no_recurrent_module_error(
                model,
                "omega_step reads the hidden states of graddoctor ElmanRNN / LeakyRNN layers; "
                "none ran in the forward pass (nn.RNN's states cannot be reached: use ElmanRNN)",
            )
        task_loss = problem.loss_fn(outputs, targets)
        if not isinstance(task_loss, torch.Tensor) or task_loss.dim() != 0:
            raise ValueError("the loss must be a scalar tensor: reduce it (e.g. .mean())")
        states = [state for trace in traces for state in trace.hidden_states[1:]]
        grads = (
            torch.autograd.grad(task_loss, states, retain_graph=True, allow_unused=True)
            if states
            else ()
        )
        omega = task_loss.new_zeros(())
        start = 0
        for trace in traces:
            stop = start + len(trace.preactivations)
            omega = omega + vanishing_gradient_regularizer(
                trace, list(grads[start:stop]), form, differentiate_activations
            ).to(omega.dtype)
            start = stop
        loss = task_loss + strength * omega
        for penalty in problem.penalties:
            loss = loss + penalty(model, inputs, outputs)
        backward_and_step(problem, model, optimizer, loss)
        return loss.detach()

    step_fn.__name__ = "omega_step"
    return step_fn
