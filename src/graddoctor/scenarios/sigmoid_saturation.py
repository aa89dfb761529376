r"""Glorot & Bengio (2010): a deep sigmoid MLP with the "standard" init saturates its top layer.

Claim (Glorot & Bengio, "Understanding the difficulty of training deep feedforward
neural networks", AISTATS 2010, sec. 3.1 and 4.2): with the standard initialisation

.. math:: W_{ij} \sim U\left[-\frac{1}{\sqrt{n}}, \frac{1}{\sqrt{n}}\right]

a deep sigmoid network drives its top hidden layer to saturation at 0 early in
training while the lower layers stay near 0.5, and learning stalls on a plateau; the
back-propagated gradients shrink by about :math:`\tfrac14 \sqrt{n \cdot \tfrac{1}{3n}}
\approx 0.14` per layer going down. Symmetric activations (tanh, softsign) do not
saturate the top layer, and the normalised init

.. math:: W_{ij} \sim U\left[-\frac{\sqrt 6}{\sqrt{n_j + n_{j+1}}}, \frac{\sqrt 6}{\sqrt{n_j + n_{j+1}}}\right]

keeps the back-propagated gradients of a tanh network about equal across layers.

Here: 5 hidden layers of 256 units on a 10-class Gaussian-mixture task (the paper: 5 x
1000 on Shapeset-3x2), zero biases, plain SGD at lr 0.5 with mini-batches of 32.
"""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.init import glorot_uniform_
from graddoctor.problem import Problem
from graddoctor.scenarios._base import (
    Scenario,
    check_seed,
    gaussian_mixture,
    generator,
    mlp,
    sgd,
    split_batches,
    uniform_fan_in_,
    zeros_,
)

NAME = "sigmoid-saturation"
N_FEATURES = 32
N_CLASSES = 10
HIDDEN_LAYERS = 5
HIDDEN_UNITS = 256
N_SAMPLES = 1024
BATCH_SIZE = 32
LR = 0.5

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softsign": nn.Softsign}


def _normalized_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return glorot_uniform_(tensor, generator=gen)


INITS = {"standard": uniform_fan_in_, "normalized": _normalized_}


def saturation_problem(
    seed: int = 0, activation: str = "sigmoid", init: str = "standard"
) -> Problem:
    """The 5 x 256 MLP with ``activation`` (sigmoid, tanh, softsign) and ``init`` (standard, normalized)."""
    seed = check_seed(seed)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    x, labels = gaussian_mixture(seed, N_SAMPLES, N_FEATURES, N_CLASSES)
    widths = [N_FEATURES] + [HIDDEN_UNITS] * HIDDEN_LAYERS + [N_CLASSES]
    model = mlp(
        widths, ACTIVATIONS[activation], INITS[init], generator(seed, stream=1), bias_init=zeros_
    )
    return Problem(
        model=model,
        data=split_batches(x, labels, BATCH_SIZE),
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=sgd(LR),
        name=f"{NAME}-{activation}-{init}",
        notes={"lr": LR, "activation": activation, "init": init},
    )


def build(seed: int = 0) -> Scenario:
    """The sigmoid-saturation scenario: sigmoid baseline; tanh, softsign, normalised-init variants."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="Saturated top layer and vanishing gradients in a deep sigmoid MLP (standard init)",
        claim=(
            "With the standard U[-1/sqrt(n), 1/sqrt(n)] init, a 5-hidden-layer sigmoid network "
            "pushes its top hidden layer to saturation near 0 and its loss stays on the chance "
            "plateau, with back-propagated gradients shrinking ~7x per layer towards the input; "
            "tanh and softsign do not saturate that way and train, and the normalised init keeps "
            "the gradients of a tanh network about equal across layers."
        ),
        source="Glorot & Bengio, Understanding the difficulty of training deep feedforward neural networks, AISTATS 2010",
        baseline=saturation_problem(seed, "sigmoid", "standard"),
        variants={
            "tanh": saturation_problem(seed, "tanh", "standard"),
            "softsign": saturation_problem(seed, "softsign", "standard"),
            "normalized-init": saturation_problem(seed, "tanh", "normalized"),
        },
        remedies=["swap_activation", "init_glorot", "batchnorm", "init_lsuv"],
        steps=200,
        expected_findings={
            # the top layer is driven towards 0 (mean ~0.07 after 200 steps) but not within
            # 1% of the bound that `saturated_activations` requires; the vanishing is measured
            "baseline": ["vanishing_gradients"],
            "tanh": [],
            "softsign": [],
            "normalized-init": [],
        },
        seed=seed,
    )
