"""Tests for graddoctor.remedies.targets (standardize_target, standardize_problem)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from graddoctor.problem import Problem, compute_loss
from graddoctor.remedies.targets import TargetScaler, standardize_problem, standardize_target


def regression_batches(columns: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three batches of unequal size; targets with very different scales per column."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1000.0, 0.01, 7.0][:columns])
    offset = torch.tensor([5000.0, -3.0, 0.0][:columns])
    batches = []
    for size in (16, 9, 23):
        x = torch.randn(size, 3, generator=generator)
        y = torch.randn(size, columns, generator=generator) * scale + offset
        batches.append((x, y))
    return batches


def naive_column_stats(batches) -> tuple[list[float], list[float]]:
    """Per-column mean and population std, plain Python over every row of every batch."""
    rows = [row for _, y in batches for row in y.double().tolist()]
    k = len(rows[0])
    means = [sum(r[j] for r in rows) / len(rows) for j in range(k)]
    stds = [math.sqrt(sum((r[j] - means[j]) ** 2 for r in rows) / len(rows)) for j in range(k)]
    return means, stds


def test_statistics_match_naive_reference() -> None:
    batches = regression_batches()
    scaler = standardize_target(batches)
    means, stds = naive_column_stats(batches)
    assert scaler.mean.tolist() == pytest.approx(means, rel=1e-6)
    assert scaler.std.tolist() == pytest.approx(stds, rel=1e-6)
    assert scaler.mean.dtype == torch.float32 and scaler.mean.shape == (2,)


def test_transformed_targets_have_mean_zero_std_one() -> None:
    batches = regression_batches(columns=3)
    scaler = standardize_target(batches)
    transformed = [(x, scaler.transform(y)) for x, y in batches]
    means, stds = naive_column_stats(transformed)
    assert all(abs(m) < 1e-4 for m in means)
    assert stds == pytest.approx([1.0, 1.0, 1.0], rel=1e-4)


def test_inverse_undoes_transform_and_inputs_are_untouched() -> None:
    batches = regression_batches()
    snapshot = [(x.clone(), y.clone()) for x, y in batches]
    scaler = standardize_target(batches)
    for (x, y), (x0, y0) in zip(batches, snapshot):
        back = scaler.inverse(scaler.transform(y))
        assert torch.allclose(back, y, rtol=1e-5, atol=1e-3)  # |y| ~ 5000: float32 rounding
        assert torch.equal(x, x0) and torch.equal(y, y0)


def test_one_dimensional_targets_give_scalar_statistics() -> None:
    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(10, 2), 50 + 20 * torch.randn(10, generator=generator)) for _ in range(3)
    ]
    scaler = standardize_target(batches)
    values = [v for _, y in batches for v in y.tolist()]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert scaler.mean.dim() == 0
    assert float(scaler.mean) == pytest.approx(mean, rel=1e-6) and float(
        scaler.std
    ) == pytest.approx(std, rel=1e-6)
    assert scaler.transform(batches[0][1]).shape == (10,)


def test_sequence_targets_are_per_last_column() -> None:
    generator = torch.Generator().manual_seed(2)
    y = torch.randn(4, 6, 2, generator=generator) * torch.tensor([3.0, 100.0])
    scaler = standardize_target([(torch.zeros(4, 6, 1), y)])
    means, stds = naive_column_stats([(None, y.reshape(-1, 2))])
    assert scaler.std.tolist() == pytest.approx(stds, rel=1e-6)
    assert scaler.mean.tolist() == pytest.approx(means, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="last dimension"):
        scaler.transform(torch.zeros(4, 3))


def test_problem_round_trip() -> None:
    torch.manual_seed(3)
    batches = regression_batches()
    model = nn.Linear(3, 2)
    problem = Problem(model=model, data=batches, loss_fn=nn.functional.mse_loss, name="reg")
    weights = copy.deepcopy(model.state_dict())
    snapshot = [(x.clone(), y.clone()) for x, y in batches]

    new = standardize_problem(problem)
    scaler = new.notes["target_scaler"]
    assert isinstance(scaler, TargetScaler) and "target_scaler" not in problem.notes
    # the original is untouched
    assert problem.data is batches and problem.predict_transform is None
    assert all(
        torch.equal(x, x0) and torch.equal(y, y0) for (x, y), (x0, y0) in zip(batches, snapshot)
    )
    # new data: same inputs, standardised targets
    assert all(nx is x for (nx, _), (x, _) in zip(new.data, batches))
    assert all(
        torch.allclose(ny, (y - scaler.mean) / scaler.std)
        for (_, ny), (_, y) in zip(new.data, batches)
    )
    # a fresh model copy with the same weights
    assert new.model is not model
    assert all(torch.equal(a, b) for a, b in zip(new.model.state_dict().values(), weights.values()))
    # predict_transform maps outputs back: a perfect standardised prediction gives y
    assert torch.allclose(
        new.predict_transform(new.data[0][1]), batches[0][1], rtol=1e-5, atol=1e-3
    )
    # training the new problem never touches the original model
    with torch.no_grad():
        new.model.weight.add_(1.0)
    assert torch.equal(model.weight, weights["weight"])


def test_fitted_model_predicts_on_the_original_scale() -> None:
    batches = regression_batches(seed=4)
    x = torch.cat([b[0] for b in batches])
    true_weight = torch.tensor([[300.0, -200.0, 100.0], [0.01, 0.02, -0.03]])
    data = [(bx, bx @ true_weight.T + torch.tensor([5000.0, -3.0])) for bx, _ in batches]
    problem = standardize_problem(
        Problem(model=nn.Linear(3, 2), data=data, loss_fn=nn.functional.mse_loss)
    )
    z = torch.cat([b[1] for b in problem.data])
    solution = torch.linalg.lstsq(
        torch.cat([x, torch.ones(len(x), 1)], 1), z
    ).solution  # least squares on z
    with torch.no_grad():
        problem.model.weight.copy_(solution[:3].T)
        problem.model.bias.copy_(solution[3])
    predictions = problem.predict_transform(problem.model(x).detach())
    targets = torch.cat([b[1] for b in data])
    assert torch.allclose(predictions, targets, rtol=1e-4, atol=1e-2)


def test_existing_predict_transform_is_composed() -> None:
    batches = regression_batches()
    problem = Problem(
        model=nn.Linear(3, 2),
        data=batches,
        loss_fn=nn.functional.mse_loss,
        predict_transform=lambda out: out + 1.0,
    )
    new = standardize_problem(problem)
    scaler = new.notes["target_scaler"]
    z = torch.zeros(5, 2)
    assert torch.allclose(new.predict_transform(z), scaler.mean.expand(5, 2) + 1.0)


def test_standardised_targets_shrink_the_output_gradient() -> None:
    torch.manual_seed(5)
    problem = Problem(
        model=nn.Linear(3, 2), data=regression_batches(), loss_fn=nn.functional.mse_loss
    )
    new = standardize_problem(problem)
    norms = []
    for p in (problem, new):
        p.model.zero_grad()
        compute_loss(p, p.model, p.data[0]).backward()
        norms.append(float(p.model.bias.grad.norm()))
    assert norms[0] > 100 * norms[1]


def test_errors() -> None:
    labels = [(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))]
    with pytest.raises(TypeError, match="standardize_target is for regression targets"):
        standardize_target(labels)
    constant = [(torch.randn(4, 3), torch.stack([torch.randn(4), torch.full((4,), 2.0)], dim=1))]
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant"):
        standardize_target(constant)
    with pytest.raises(ValueError, match="NaN"):
        standardize_target([(torch.randn(2, 1), torch.tensor([1.0, float("nan")]))])
    with pytest.raises(ValueError, match="same number of columns"):
        standardize_target(
            [(torch.randn(2, 1), torch.randn(2, 2)), (torch.randn(2, 1), torch.randn(2, 3))]
        )
    with pytest.raises(ValueError, match="at least one"):
        standardize_target([])
    with pytest.raises(ValueError, match="pair"):
        standardize_target([torch.randn(3)])
