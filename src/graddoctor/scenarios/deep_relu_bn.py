r"""A deep ReLU MLP with a poor initialisation, with and without batch normalisation.

Claim ("Can we get away with a bad initialization? Batch normalization is all you need!",
Torres, Amaral, Medeiros & Medeiros, "Vanishing and Exploding Gradients", after Godoy,
"Deep Learning with PyTorch Step-by-Step", extra chapter; Ioffe & Szegedy 2015): in the 5 x 100 ReLU MLP ``h1, a1, ..., h5, a5, o``
with weights drawn from :math:`\mathcal N(0, 0.01^2)`, every hidden layer multiplies the
back-propagated gradient by about

.. math:: \sigma_w \sqrt{n / 2} = 0.01 \sqrt{100 / 2} \approx 0.07,

so the first layer's weight gradient is orders of magnitude smaller than the last
layer's and the network does not train; the same weights with ``BatchNorm1d`` after
each hidden Linear have per-layer gradients of the same order and train.

Those slides' pictures use :math:`\mathcal N(0, 0.1^2)` with zero biases on a "ball"
classification; with zero biases the weight gradients of a product of layers all scale
alike (:math:`\|\nabla W_i\| \propto \|\delta_i\| \|a_{i-1}\|`), which hides the
vanishing in per-layer weight-gradient norms. This scenario keeps PyTorch's default
biases and the stronger 0.01 scale so the vanishing shows in those norms, on a
regression version of the ball data: :math:`y = \|x\|^2`, standardised.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.scenarios._base import Scenario, check_seed, generator, mlp, sgd, split_batches

NAME = "deep-relu-bn"
N_FEATURES = 10
HIDDEN_LAYERS = 5
HIDDEN_UNITS = 100
WEIGHT_STD = 0.01
N_SAMPLES = 512
BATCH_SIZE = 64
LR = 0.01


def ball_regression(seed: int = 0, n_samples: int = N_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Standard normal inputs and the standardised squared radius as the target.

    .. math:: x \sim \mathcal N(0, I_{10}), \qquad y = (\|x\|^2 - \bar y) / s_y

    Returns:
        float32 ``x`` ``[n, 10]`` and ``y`` ``[n, 1]``.
    """
    gen = generator(seed, stream=0)
    x = torch.randn(n_samples, N_FEATURES, generator=gen)
    y = x.square().sum(dim=1, keepdim=True)
    return x, (y - y.mean()) / y.std()


def _small_normal_(tensor: torch.Tensor, gen: torch.Generator, std: float) -> torch.Tensor:
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=gen)


def deep_relu_problem(
    seed: int = 0, batchnorm: bool = False, weight_std: float = WEIGHT_STD
) -> Problem:
    """The 5 x 100 ReLU MLP on the ball regression; ``batchnorm`` adds ``bn{i}`` after ``h{i}``.

    The weights are the same with and without batch normalisation for a given seed.
    """
    seed = check_seed(seed)
    x, y = ball_regression(seed)
    widths = [N_FEATURES] + [HIDDEN_UNITS] * HIDDEN_LAYERS + [1]
    init = functools.partial(_small_normal_, std=weight_std)
    model = mlp(widths, nn.ReLU, init, generator(seed, stream=1), batchnorm=batchnorm)
    return Problem(
        model=model,
        data=split_batches(x, y, BATCH_SIZE),
        loss_fn=nn.MSELoss(),
        optimizer=sgd(LR),
        name=f"{NAME}{'-batchnorm' if batchnorm else ''}",
        notes={"lr": LR, "weight_std": weight_std, "batchnorm": batchnorm},
    )


def build(seed: int = 0) -> Scenario:
    """The deep-relu-bn scenario: baseline without batch norm, variant ``"batchnorm"``."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="Vanishing gradients in a 5 x 100 ReLU MLP with N(0, 0.01) weights; batch norm rescues it",
        claim=(
            "With weights drawn from N(0, 0.01^2) the back-propagated gradient shrinks ~14x per "
            "hidden layer, so the first layer barely learns and the loss stays put; inserting "
            "BatchNorm1d after each hidden Linear restores per-layer gradients of one order "
            "and the same weights train."
        ),
        source=(
            "Ioffe & Szegedy, Batch Normalization, ICML 2015; Godoy, Deep Learning with PyTorch "
            'Step-by-Step, extra chapter "Vanishing and Exploding Gradients"'
        ),
        baseline=deep_relu_problem(seed),
        variants={"batchnorm": deep_relu_problem(seed, batchnorm=True)},
        remedies=["init_he", "init_lsuv", "batchnorm"],
        steps=60,
        expected_findings={"baseline": ["vanishing_gradients"], "batchnorm": []},
        seed=seed,
    )
