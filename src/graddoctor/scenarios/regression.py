"""The exploding regression: unscaled targets and SGD at lr 0.01 end in NaN.

After Godoy, "Deep Learning with PyTorch Step-by-Step", extra chapter "Vanishing and
Exploding Gradients".

The data follows the recipe of scikit-learn's ``make_regression`` (standard normal
inputs, all features informative with coefficients uniform in [0, 100), Gaussian
noise), generated here with a ``torch.Generator`` so nothing is downloaded or
imported: the targets have a standard deviation near 180, which is what explodes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..problem import Problem


def make_regression(
    n_samples: int = 1000, n_features: int = 10, noise: float = 0.1, seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Linear regression data with large coefficients.

    .. math:: y = X w + \varepsilon,\quad X_{ij} \sim \mathcal N(0, 1),\
        w_j \sim \mathcal U[0, 100),\ \varepsilon \sim \mathcal N(0, \text{noise}^2)

    Returns:
        ``X`` float32 ``[n_samples, n_features]`` and ``y`` float32 ``[n_samples, 1]``.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, n_features, generator=gen, dtype=torch.float64)
    coef = 100.0 * torch.rand(n_features, 1, generator=gen, dtype=torch.float64)
    y = x @ coef + noise * torch.randn(n_samples, 1, generator=gen, dtype=torch.float64)
    return x.float(), y.float()


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int = 32, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of ``(inputs, targets)`` mini-batches (a fixed order)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [
        (x[order[i : i + batch_size]], y[order[i : i + batch_size]])
        for i in range(0, len(x), batch_size)
    ]


def regression_mlp(n_features: int = 10, hidden: int = 15, seed: int = 11) -> nn.Sequential:
    """The book's model: ``fc1`` Linear(10, 15), ReLU ``act``, ``fc2`` Linear(15, 1)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            [
                ("fc1", nn.Linear(n_features, hidden)),
                ("act", nn.ReLU()),
                ("fc2", nn.Linear(hidden, 1)),
            ]
        )
    )


def exploding_regression(lr: float = 0.01, seed: int = 11, batch_size: int = 32) -> Problem:
    """The book's problem: MLP 10-15-1, MSE, SGD at ``lr``, batches of 32 of 1000 samples."""
    x, y = make_regression()
    return Problem(
        model=regression_mlp(seed=seed),
        data=batches(x, y, batch_size),
        loss_fn=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=lr),
        name="exploding-regression",
        notes={"lr": lr, "epoch_batches": -(-len(x) // batch_size)},
    )
