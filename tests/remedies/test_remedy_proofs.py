"""End-to-end proofs: real training runs where a registered remedy turns divergence into learning.

Each test trains a small problem twice, without and with a remedy from the registry, and
asserts what the literature says should happen.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from graddoctor.problem import Problem, train_step
from graddoctor.remedies import chain, get_remedy
from graddoctor.remedies.recurrent import SequenceModel
from graddoctor.scenarios.regression import exploding_regression


def train(problem: Problem, steps: int) -> list[float]:
    """``steps`` training steps of ``problem`` on its own model; the loss of each step."""
    model = problem.model
    optimizer = problem.make_optimizer(model)
    return [float(train_step(problem, model, optimizer, batch)) for batch in problem.take(steps)]


def naive_variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def mean_squared_error(model: nn.Module, data) -> float:
    """Over every sample of every batch, accumulated in a plain Python loop."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data:
            for predicted, wanted in zip(model(inputs).flatten().tolist(), targets.flatten().tolist()):
                total += (predicted - wanted) ** 2
                count += 1
    return total / count


def test_seed_004_he_init_and_value_clipping_allow_a_ten_times_larger_lr():
    """Seed 004 (Torres, Amaral, Medeiros & Medeiros, "Vanishing and Exploding Gradients").

    make_regression targets (std near 180) with an MLP 10-15-1 and SGD at lr 0.01: the
    loss is NaN within two epochs ("[16985.01, nan]"), gradients grow from 1e0 to 1e26.
    The fix shown there: He (Kaiming) initialisation of every Linear (He et al. 2015) and
    gradient value clipping at 1.0 (Mikolov 2012) "can use a ten times higher learning
    rate" and train for 10 epochs. Clipping is what bounds each step; He init alone at
    lr 0.1 still diverges here.
    """
    baseline = exploding_regression(lr=0.01)
    epoch = len(baseline.data)
    losses = train(baseline, 2 * epoch)
    assert math.isfinite(losses[0])
    assert not all(math.isfinite(loss) for loss in losses), "lr 0.01 should go non-finite within 2 epochs"

    he_only = get_remedy("init_he").apply(exploding_regression(lr=0.1))
    assert not all(math.isfinite(loss) for loss in train(he_only, 2 * epoch))

    fixed = chain("init_he", get_remedy("clip_value").with_params(value=1.0)).apply(exploding_regression(lr=0.1))
    assert fixed.make_optimizer().param_groups[0]["lr"] == 0.1
    losses = train(fixed, 10 * epoch)
    assert all(math.isfinite(loss) for loss in losses)
    variance = naive_variance([float(v) for _, y in fixed.data for v in y.flatten()])
    assert 150**2 < variance < 250**2  # the scale that makes the raw problem explode
    assert mean_squared_error(fixed.model, fixed.data) < 0.01 * variance


def relu_rnn_problem(radius: float = 3.0, steps: int = 10) -> Problem:
    """A ReLU Elman RNN whose recurrent matrix has spectral radius ``radius``; SGD at lr 0.01."""
    torch.manual_seed(0)
    model = SequenceModel(nn.RNN(3, 16, nonlinearity="relu", batch_first=True), 1)
    with torch.no_grad():
        weight = model.rnn.weight_hh_l0
        weight.mul_(radius / torch.linalg.eigvals(weight).abs().max())
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, steps, 3, generator=g), torch.randn(16, 1, generator=g)) for _ in range(4)]
    return Problem(model, data, nn.MSELoss(), lambda params: torch.optim.SGD(params, lr=0.01), name="relu-rnn")


def test_norm_clipping_keeps_an_exploding_relu_rnn_finite():
    """Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural networks".

    With a ReLU, the Jacobian through time is a product of masked copies of W_hh; a spectral
    radius above 1 (here 3) lets the gradient grow like 3^T along surviving paths, and one
    SGD step on it throws the weights to where the next forward pass overflows. Rescaling
    the gradient to a maximum norm (their Algorithm 1) bounds every update by lr * max_norm,
    so training stays finite: the remedy the paper proposes against exploding gradients.
    """
    steps = 20
    raw = relu_rnn_problem()
    radius = float(torch.linalg.eigvals(raw.model.rnn.weight_hh_l0.detach()).abs().max())
    assert abs(radius - 3.0) < 1e-4
    losses = train(raw, steps)
    assert math.isfinite(losses[0])  # the forward pass is fine: the update explodes
    first_bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    assert first_bad is not None and first_bad <= 3, losses[:5]

    clipped = get_remedy("clip_norm").apply(relu_rnn_problem())
    losses = train(clipped, steps)
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-5:]) / 5 < losses[0]  # and it learns
