r"""The exploding regression as a scenario: unscaled targets + SGD at lr 0.01 -> NaN.

Claim (Godoy, "Deep Learning with PyTorch Step-by-Step", extra chapter "Vanishing and
Exploding Gradients"; presented in Torres, Amaral, Medeiros & Medeiros, "Vanishing and
Exploding Gradients"): a 10-15-1 ReLU MLP trained with plain SGD at lr 0.01 on
``make_regression`` data (targets with a standard deviation near 180) sees its gradients
grow by orders of magnitude within one epoch and its loss become NaN; clipping, a lower learning rate or
standardised targets fix it.

The problem itself lives in :mod:`graddoctor.scenarios.regression`; this module only
wraps it. Seed 0 is the book's own setup (data seed 42, model seed 11).
"""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.scenarios._base import Scenario, check_seed, sgd
from graddoctor.scenarios.regression import batches, make_regression, regression_mlp

NAME = "exploding-regression"
LR = 0.01
BATCH_SIZE = 32


def exploding_problem(seed: int = 0, lr: float = LR) -> Problem:
    """The book's problem for a scenario seed: data seed ``42 + seed``, model seed ``11 + seed``.

    ``regression_mlp`` seeds the global generator; its state is saved and restored here,
    so building the problem leaves the caller's random state untouched.
    """
    seed = check_seed(seed)
    x, y = make_regression(seed=42 + seed)
    with torch.random.fork_rng(devices=[]):
        model = regression_mlp(seed=11 + seed)
    return Problem(
        model=model,
        data=batches(x, y, BATCH_SIZE, seed=seed),
        loss_fn=nn.MSELoss(),
        optimizer=sgd(lr),
        name=NAME,
        notes={"lr": lr, "target_std": float(y.std())},
    )


def build(seed: int = 0) -> Scenario:
    """The exploding-regression scenario (baseline only: the remedies are the comparison)."""
    seed = check_seed(seed)
    return Scenario(
        name=NAME,
        title="Exploding gradients: unscaled regression targets and SGD at lr 0.01",
        claim=(
            "A 10-15-1 ReLU MLP trained with SGD at lr 0.01 on make_regression targets "
            "(std ~180) has gradients growing by orders of magnitude and a NaN loss within "
            "the first epoch."
        ),
        source=(
            "Godoy, Deep Learning with PyTorch Step-by-Step, extra chapter "
            '"Vanishing and Exploding Gradients" (make_regression, SGD at lr 0.01)'
        ),
        baseline=exploding_problem(seed),
        variants={},
        remedies=["init_he", "clip_value", "standardize_target", "clip_norm", "lower_lr"],
        steps=32,
        expected_findings={"baseline": ["nonfinite", "exploding_gradients"]},
        seed=seed,
    )
