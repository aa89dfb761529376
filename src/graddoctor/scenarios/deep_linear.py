r"""A deep linear scalar chain: measured activations and gradients equal the closed forms.

Claim (lecture notes "Vanishing and Exploding Gradients - A Simple Example"): in
the chain :math:`a_i = w a_{i-1} + b`, :math:`a_0 = x`, of :math:`n` scalar layers

.. math::
    a_i = w^i x + b \sum_{k=0}^{i-1} w^k, \qquad
    \frac{\partial a_n}{\partial w_i} = a_{i-1} w^{n-i}, \qquad
    \frac{\partial a_n}{\partial b_i} = w^{n-i},

so for :math:`w < 1` the input's contribution and the gradients of the first layers
vanish (:math:`w^{n-1}`), for :math:`w = 1` they stay put (:math:`\nabla_{w_i} a_n =
a_{i-1}`), and for :math:`w > 1` activations and gradients explode and training ends in
NaN. :func:`deep_linear_measurements` measures all three with autograd next to
:mod:`graddoctor.theory`'s closed forms; they agree to float64 precision.

Here: :math:`n = 30` layers, :math:`b = 0.01`, eight inputs :math:`x \sim U[0.5, 1.5]`
regressed onto themselves (MSE), SGD at lr 0.001, float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.scenarios._base import Scenario, check_seed, generator, sgd
from graddoctor.theory import (
    build_linear_chain,
    linear_chain_activations,
    linear_chain_input_gradients,
    linear_chain_weight_gradients,
)

NAME = "deep-linear"
DEPTH = 30
BIAS = 0.01
BATCH_SIZE = 8
LR = 1e-3
WEIGHTS = (0.5, 1.0, 1.5)


def deep_linear_problem(w: float, seed: int = 0, n: int = DEPTH, b: float = BIAS) -> Problem:
    """The ``n``-layer scalar chain with every weight ``w`` and bias ``b``, float64."""
    seed = check_seed(seed)
    x = 0.5 + torch.rand(BATCH_SIZE, 1, generator=generator(seed, stream=0), dtype=torch.float64)
    return Problem(
        model=build_linear_chain(n, w, b, dtype=torch.float64),
        data=[(x, x.clone())],
        loss_fn=nn.MSELoss(),
        optimizer=sgd(LR),
        name=f"{NAME}-w={w:g}",
        notes={"w": float(w), "b": float(b), "n": int(n), "lr": LR},
    )


def _shared_value(values: list[float], what: str) -> float:
    if any(value != values[0] for value in values):
        raise ValueError(
            f"the closed forms assume every layer has the same {what}, got {values[:4]}...: "
            "measure the problem before training it"
        )
    return values[0]


def deep_linear_measurements(problem: Problem) -> dict[str, object]:
    r"""Per-layer activations and gradients measured with autograd, next to the closed forms.

    For every input :math:`x_j` of the problem's first batch the activations
    :math:`a_1..a_n` are recorded layer by layer; the gradients are those of
    :math:`\sum_j a_n(x_j)` with respect to every layer's weight and bias, compared with
    :math:`\sum_j a_{i-1}(x_j) w^{n-i}` and :math:`B w^{n-i}`.

    Args:
        problem: a problem from :func:`deep_linear_problem` (layers ``layer_1 .. layer_n``,
            all with the same weight and bias).

    Returns:
        ``{"w", "b", "n", "activations", "weight_gradients", "bias_gradients"}``; each of
        the last three is ``{"measured": array, "theory": array}`` (float64), of shape
        ``[B, n]`` for activations and ``[n]`` for gradients.
    """
    layers = [module for module in problem.model.children() if isinstance(module, nn.Linear)]
    if not layers or any(layer.weight.shape != (1, 1) for layer in layers):
        raise ValueError(
            "deep_linear_measurements needs a chain of Linear(1, 1) layers (deep_linear_problem)"
        )
    w = _shared_value([layer.weight.item() for layer in layers], "weight")
    b = _shared_value([layer.bias.item() for layer in layers], "bias")
    n = len(layers)
    inputs = problem.take(1)[0][0].detach().to(layers[0].weight.dtype)
    value, activations = inputs, []
    for layer in layers:
        value = layer(value)
        activations.append(value)
    params = [layer.weight for layer in layers] + [layer.bias for layer in layers]
    grads = torch.autograd.grad(value.sum(), params)
    xs = inputs.reshape(-1).tolist()
    return {
        "w": w,
        "b": b,
        "n": n,
        "activations": {
            "measured": torch.cat(activations, dim=1).detach().cpu().double().numpy(),
            "theory": np.stack([linear_chain_activations(x, w, b, n) for x in xs]),
        },
        "weight_gradients": {
            "measured": torch.cat([g.reshape(1) for g in grads[:n]]).cpu().double().numpy(),
            "theory": np.sum([linear_chain_weight_gradients(x, w, b, n) for x in xs], axis=0),
        },
        "bias_gradients": {
            "measured": torch.cat([g.reshape(1) for g in grads[n:]]).cpu().double().numpy(),
            "theory": len(xs) * linear_chain_input_gradients(w, n),
        },
    }


def build(seed: int = 0) -> Scenario:
    """The deep-linear scenario: baseline ``w = 0.5``; variants ``"w=0.5"``, ``"w=1.0"``, ``"w=1.5"``."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="Deep linear scalar chain: activations and gradients scale like w^i and w^(n-i)",
        claim=(
            "In an n-layer scalar linear chain the first layer's gradient is x w^(n-1): it "
            "vanishes for w < 1, stays put for w = 1 and explodes (ending in NaN) for w > 1."
        ),
        source="Lecture notes, Vanishing and Exploding Gradients - A Simple Example (the deep linear chain a_n = w^n x)",
        baseline=deep_linear_problem(0.5, seed),
        variants={f"w={w:.1f}": deep_linear_problem(w, seed) for w in WEIGHTS},
        remedies=["init_orthogonal", "clip_norm", "lower_lr"],
        steps=20,
        expected_findings={
            "baseline": ["vanishing_gradients", "vanishing_activations"],
            "w=0.5": ["vanishing_gradients", "vanishing_activations"],
            "w=1.0": [],
            "w=1.5": ["nonfinite", "exploding_gradients", "exploding_activations"],
        },
        seed=seed,
        notes={"remedies_target": "init_orthogonal: w=0.5 and w=1.5; clip_norm, lower_lr: w=1.5"},
    )
