r"""Klambauer et al. (2017): a deep SELU MLP with LeCun-normal init is self-normalising.

Claim (Klambauer, Unterthiner, Mayr & Hochreiter, "Self-Normalizing Neural Networks",
NeurIPS 2017, Theorem 1): with

.. math::
    \operatorname{selu}(x) = \lambda \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases},
    \qquad \lambda \approx 1.0507,\ \alpha \approx 1.6733,

and weights with :math:`\sum_i w_i = 0`, :math:`\sum_i w_i^2 = 1` (LeCun normal,
:math:`\operatorname{Var}[w] = 1/n`), the map from one layer's activation mean and
variance to the next has the stable fixed point :math:`(\mu, \nu) = (0, 1)`: activations
stay normalised at any depth. With He init (:math:`\operatorname{Var}[w] = 2/n`) that
fixed point is gone and the variance grows layer after layer (and SGD at the same
learning rate diverges to NaN within a few steps).

Here: 32 SELU layers of 128 units, zero biases, standardised Gaussian-mixture inputs.
:func:`layer_statistics` measures the per-layer activation mean and variance.
"""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.init import he_normal_, lecun_normal_
from graddoctor.problem import Problem
from graddoctor.scenarios._base import (
    Scenario,
    check_seed,
    gaussian_mixture,
    generator,
    hidden_outputs,
    mlp,
    sgd,
    split_batches,
    zeros_,
)

NAME = "selu-self-normalizing"
N_FEATURES = 128
N_CLASSES = 10
DEPTH = 32
WIDTH = 128
N_SAMPLES = 512
BATCH_SIZE = 128
LR = 0.01


def _lecun_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return lecun_normal_(tensor, generator=gen)


def _he_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return he_normal_(tensor, generator=gen)


INITS = {"lecun": _lecun_, "he": _he_}


def selu_problem(seed: int = 0, init: str = "lecun") -> Problem:
    """The 32 x 128 SELU MLP with ``init`` ``"lecun"`` (LeCun normal) or ``"he"`` (He normal).

    The inputs are standardised per feature (zero mean, unit variance), as the paper assumes.
    """
    seed = check_seed(seed)
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    x, labels = gaussian_mixture(seed, N_SAMPLES, N_FEATURES, N_CLASSES)
    x = (x - x.mean(dim=0)) / x.std(dim=0)
    widths = [N_FEATURES] + [WIDTH] * DEPTH + [N_CLASSES]
    model = mlp(widths, nn.SELU, INITS[init], generator(seed, stream=1), bias_init=zeros_)
    return Problem(
        model=model,
        data=split_batches(x, labels, BATCH_SIZE),
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=sgd(LR),
        name=f"{NAME}-{init}",
        notes={"lr": LR, "init": init, "depth": DEPTH},
    )


@torch.no_grad()
def layer_statistics(
    problem: Problem, inputs: torch.Tensor | None = None
) -> list[dict[str, float]]:
    r"""Mean and variance of every hidden activation ``a1 .. aL`` over a batch.

    .. math:: \mu_l = \frac{1}{BN} \sum_{b,i} a^l_{bi}, \qquad
        \nu_l = \frac{1}{BN - 1} \sum_{b,i} (a^l_{bi} - \mu_l)^2

    Args:
        problem: a problem whose model is named ``h1, a1, ..., o`` (as built here).
        inputs: the batch to pass; default: all of the problem's data batches, concatenated.

    Returns:
        one ``{"layer", "mean", "variance"}`` per hidden layer, input side first.
    """
    if inputs is None:
        inputs = torch.cat([batch[0] for batch in problem.data])
    outputs = hidden_outputs(problem.model, inputs, prefix="a")
    if not outputs:
        raise ValueError(
            "the model has no hidden activations named a1, a2, ...: build it with selu_problem"
        )
    stacked = torch.stack(
        [torch.stack([value.mean(), value.var()]) for _, value in outputs]
    ).tolist()
    return [
        {"layer": name, "mean": mean, "variance": var}
        for (name, _), (mean, var) in zip(outputs, stacked)
    ]


def build(seed: int = 0) -> Scenario:
    """The selu-self-normalizing scenario: LeCun-normal baseline (healthy), variant ``"he-init"``."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="SELU with LeCun-normal init keeps activations at mean 0 / variance 1; He init drifts",
        claim=(
            "In a deep SELU network with LeCun-normal weights the activation mean and variance "
            "converge to the fixed point (0, 1) at every layer; with He-normal weights the "
            "variance grows with depth."
        ),
        source="Klambauer, Unterthiner, Mayr & Hochreiter, Self-Normalizing Neural Networks, NeurIPS 2017",
        baseline=selu_problem(seed, "lecun"),
        variants={"he-init": selu_problem(seed, "he")},
        remedies=["init_lecun", "init_lsuv", "batchnorm"],
        steps=50,
        expected_findings={
            "baseline": [],
            # the variance grows ~100x over 32 layers (std ~10x): under the 1e3 of
            # `exploding_activations`; training goes NaN within 4 steps
            "he-init": ["nonfinite", "exploding_gradients"],
        },
        seed=seed,
        notes={
            "remedies_target": "he-init (the LeCun baseline is the healthy reference)",
            "compare_on": "he-init",
        },
    )
