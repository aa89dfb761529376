r"""He et al. (2015): a 30-layer ReLU MLP stalls with Xavier init and trains with He init.

Claim (He, Zhang, Ren & Sun, "Delving Deep into Rectifiers", ICCV 2015, sec. 2.2-2.3 and
Figure 3): for ReLU layers the forward variance obeys

.. math:: \operatorname{Var}[y_L] = \operatorname{Var}[y_1] \prod_{l=2}^{L} \tfrac12 n_l \operatorname{Var}[w_l],

so Xavier's :math:`\operatorname{Var}[w] = 1/n` halves the variance at every layer and a
30-layer network "completely stalls" (its signal and gradients shrink by
:math:`2^{-29/2}`), while :math:`\operatorname{Var}[w] = 2/n` keeps it constant and the
same network converges.

Here: 30 hidden ReLU layers of 64 units (square layers, so Xavier's fan-average equals
the paper's :math:`1/n`), zero biases, no batch norm, a 10-class Gaussian-mixture task,
SGD with momentum 0.9 at lr 0.002, mini-batches of 64. The output layer of both gets the
usual classifier init :math:`\mathcal N(0, 0.01^2)`, so both start at the chance-level
loss :math:`\ln 10` and differ only in their hidden layers.
"""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.init import glorot_normal_, he_normal_
from graddoctor.problem import Problem
from graddoctor.scenarios._base import (
    Scenario,
    check_seed,
    gaussian_mixture,
    generator,
    mlp,
    sgd,
    split_batches,
    zeros_,
)

NAME = "xavier-vs-he"
N_FEATURES = 32
N_CLASSES = 10
DEPTH = 30
WIDTH = 64
N_SAMPLES = 1024
BATCH_SIZE = 64
LR = 0.002
MOMENTUM = 0.9
OUTPUT_STD = 0.01


def _xavier_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return glorot_normal_(tensor, generator=gen)


def _he_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return he_normal_(tensor, generator=gen)


def _classifier_(tensor: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        return tensor.normal_(0.0, OUTPUT_STD, generator=gen)


INITS = {"xavier": _xavier_, "he": _he_}


def deep_relu_problem(seed: int = 0, init: str = "xavier") -> Problem:
    """The 30 x 64 ReLU MLP with ``init`` ``"xavier"`` (Glorot normal) or ``"he"`` (He normal)."""
    seed = check_seed(seed)
    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    x, labels = gaussian_mixture(seed, N_SAMPLES, N_FEATURES, N_CLASSES)
    widths = [N_FEATURES] + [WIDTH] * DEPTH + [N_CLASSES]
    model = mlp(
        widths,
        nn.ReLU,
        INITS[init],
        generator(seed, stream=1),
        bias_init=zeros_,
        output_init=_classifier_,
    )
    return Problem(
        model=model,
        data=split_batches(x, labels, BATCH_SIZE),
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=sgd(LR, MOMENTUM),
        name=f"{NAME}-{init}",
        notes={"lr": LR, "momentum": MOMENTUM, "init": init, "depth": DEPTH},
    )


def build(seed: int = 0) -> Scenario:
    """The xavier-vs-he scenario: Xavier baseline, variant ``"he-init"``."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="A 30-layer ReLU MLP stalls with Xavier init and trains with He init",
        claim=(
            "With Xavier init (Var[w] = 1/n) each ReLU layer halves the signal variance, so a "
            "30-layer network does not learn at all (its loss stays at the chance level); with "
            "He init (Var[w] = 2/n) the same network converges."
        ),
        source="He, Zhang, Ren & Sun, Delving Deep into Rectifiers, ICCV 2015 (Figure 3)",
        baseline=deep_relu_problem(seed, "xavier"),
        variants={"he-init": deep_relu_problem(seed, "he")},
        remedies=["init_he", "init_lsuv", "batchnorm"],
        steps=200,
        expected_findings={
            "baseline": ["vanishing_gradients", "vanishing_activations"],
            "he-init": [],
        },
        seed=seed,
    )
