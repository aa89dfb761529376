"""Tests for graddoctor.remedies.lr (StepGuard, guard_steps, suggest_lr)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from graddoctor.problem import Problem, train_step
from graddoctor.remedies.lr import StepGuard, guard_steps, suggest_lr


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def fill_grads(model: nn.Module, seed: int, poison: float | None = None) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    if poison is not None:
        model[2].bias.grad[1] = poison


def state_equal(a, b) -> bool:
    """Recursive equality of optimizer state dicts (tensors compared exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    return a == b


def two_group_optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    groups = [
        {"params": model[0].parameters(), "lr": 0.1},
        {"params": model[2].parameters(), "lr": 0.02},
    ]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    return torch.optim.Adam(groups, lr=0.1)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_skipped_step_changes_neither_params_nor_optimizer_state(kind: str, poison: float) -> None:
    model = small_model()
    optimizer = two_group_optimizer(model, kind)
    guard = StepGuard(optimizer, factor=0.5)
    for seed in range(3):  # build momentum / Adam moments first
        fill_grads(model, seed)
        assert guard.step() is True
    params_before = copy.deepcopy(model.state_dict())
    state_before = copy.deepcopy(optimizer.state_dict()["state"])
    fill_grads(model, 10, poison=poison)
    assert guard.step() is False
    assert state_equal(model.state_dict(), params_before)
    assert state_equal(optimizer.state_dict()["state"], state_before)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.01]
    assert guard.skipped == 1


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_finite_steps_equal_the_plain_optimizer(kind: str) -> None:
    guarded, plain = small_model(), small_model()
    guard = StepGuard(two_group_optimizer(guarded, kind))
    reference = two_group_optimizer(plain, kind)
    for seed in range(5):
        fill_grads(guarded, seed)
        fill_grads(plain, seed)
        guard.step()
        reference.step()
    assert state_equal(guarded.state_dict(), plain.state_dict())
    assert guard.skipped == 0 and reference.param_groups[0]["lr"] == 0.1


def test_large_finite_gradients_are_not_flagged() -> None:
    model = small_model()
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)  # the 2-norm would overflow float32
    guard = StepGuard(torch.optim.SGD(model.parameters(), lr=0.0))
    naive = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    assert guard.gradients_finite() is naive is True
    half = nn.Parameter(torch.zeros(1000, dtype=torch.float16))
    half.grad = torch.full((1000,), 60000.0, dtype=torch.float16)  # its 1-norm overflows fp16
    assert bool(torch.isfinite(half.grad).all())
    assert StepGuard(torch.optim.SGD([half], lr=0.0)).gradients_finite() is True
    half.grad[3] = float("nan")
    assert StepGuard(torch.optim.SGD([half], lr=0.0)).gradients_finite() is False


def test_detection_matches_naive_check_on_many_patterns() -> None:
    model = small_model()
    guard = StepGuard(torch.optim.SGD(model.parameters(), lr=0.1))
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(3)
    for trial in range(20):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        if trial % 2:
            victim = params[trial % len(params)]
            index = int(torch.randint(victim.numel(), (1,), generator=generator))
            victim.grad.view(-1)[index] = [float("nan"), float("inf")][trial % 4 // 2]
        naive = all(
            not math.isnan(v) and not math.isinf(v)
            for p in params
            for v in p.grad.flatten().tolist()
        )
        assert guard.gradients_finite() == naive


def test_missing_gradients_are_ignored() -> None:
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = StepGuard(optimizer)
    model[2].weight.grad = torch.ones_like(model[2].weight)
    before = model[0].weight.detach().clone()
    assert guard.step() is True
    assert torch.equal(model[0].weight, before)


def test_min_lr_floor_and_patience() -> None:
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    guard = StepGuard(optimizer, factor=0.1, min_lr=0.005, patience=2)
    lrs = []
    for step in range(7):
        fill_grads(model, step, poison=float("nan") if step != 3 else None)
        guard.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    # skips at 0,1,2 (lr lowered at the 3rd consecutive), finite at 3, skips at 4,5,6
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.01])
    assert guard.skipped == 6
    for step in range(3):
        fill_grads(model, step, poison=float("nan"))
        guard.step()
    assert optimizer.param_groups[0]["lr"] == 0.005
    optimizer.param_groups[0]["lr"] = 0.001  # already below the floor: kept, not raised
    fill_grads(model, 0, poison=float("nan"))
    guard.step()
    assert optimizer.param_groups[0]["lr"] == 0.001


def test_state_dict_round_trip() -> None:
    model = small_model()
    guard = StepGuard(torch.optim.SGD(model.parameters(), lr=1.0), patience=3)
    for step in range(2):
        fill_grads(model, step, poison=float("nan"))
        guard.step()
    other = StepGuard(torch.optim.SGD(model.parameters(), lr=1.0), patience=3)
    other.load_state_dict(guard.state_dict())
    assert other.state_dict() == {"skipped": 2, "consecutive": 2}
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"skipped": 1})


def test_bad_settings_are_rejected() -> None:
    optimizer = torch.optim.SGD(small_model().parameters(), lr=1.0)
    with pytest.raises(ValueError, match="factor"):
        StepGuard(optimizer, factor=0.0)
    with pytest.raises(ValueError, match="min_lr"):
        StepGuard(optimizer, min_lr=-1.0)
    with pytest.raises(ValueError, match="patience"):
        StepGuard(optimizer, patience=-1)
    with pytest.raises(TypeError, match="Optimizer"):
        StepGuard(small_model())


def test_guard_steps_problem_skips_poisoned_batch() -> None:
    model = small_model()
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    bad = x.clone()
    bad[0, 0] = float("nan")
    problem = Problem(model=model, data=[(x, y), (bad, y), (x, y)], loss_fn=nn.functional.mse_loss)
    original = copy.deepcopy(model.state_dict())
    guarded = guard_steps(problem, factor=0.5)
    optimizer = guarded.make_optimizer()
    for batch in guarded.take(3):
        train_step(guarded, guarded.model, optimizer, batch)
    guard = guarded.step_fn.guards[optimizer]
    assert guard.skipped == 1 and optimizer.param_groups[0]["lr"] == 0.005
    assert all(torch.isfinite(p).all() for p in guarded.model.parameters())
    assert state_equal(model.state_dict(), original)
    with pytest.raises(ValueError, match="step_fn"):
        guard_steps(guarded)


def regression_data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Linear regression with features on different scales, and its SGD bound 2 / L."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator) * torch.tensor([1.0, 2.0, 5.0, 0.5])
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(
        n, 1, generator=generator
    )
    augmented = torch.cat([x, torch.ones(n, 1)], dim=1).double()  # the bias is a parameter too
    hessian = 2.0 / n * augmented.T @ augmented  # of mean squared error
    largest = float(torch.linalg.eigvalsh(hessian).max())
    return x, y, 2.0 / largest


def full_batch_loss_after(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int
) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return float(nn.functional.mse_loss(model(x), y).detach())


def test_suggested_lr_is_below_the_divergence_bound_and_trains() -> None:
    x, y, bound = regression_data()
    torch.manual_seed(1)
    model = nn.Linear(4, 1)
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    result = suggest_lr(model, [(x, y)], nn.functional.mse_loss)
    assert state_equal(model.state_dict(), before) and model.weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    assert result.diverged
    assert 0 < result.suggested_lr < bound
    assert result.suggested_lr <= result.min_loss_lr
    initial = float(nn.functional.mse_loss(model(x), y).detach())
    trained = full_batch_loss_after(copy.deepcopy(model), x, y, result.suggested_lr, steps=50)
    assert trained < 0.5 * initial
    # the sweep stopped soon after the bound: a few sweep steps at most past 2 / L
    assert result.lrs[-1] > bound


def test_lrs_and_smoothing_match_naive_formulas() -> None:
    x, y, _ = regression_data(64)
    result = suggest_lr(
        nn.Linear(4, 1),
        (x, y),
        nn.functional.mse_loss,
        min_lr=1e-4,
        max_lr=1.0,
        steps=20,
        smooth=0.9,
    )
    for i, lr in enumerate(result.lrs):
        assert lr == pytest.approx(1e-4 * (1.0 / 1e-4) ** (i / 19), rel=1e-12)
    average = 0.0
    for i, raw in enumerate(result.raw_losses):
        average = 0.9 * average + 0.1 * raw
        assert result.losses[i] == pytest.approx(average / (1 - 0.9 ** (i + 1)), rel=1e-12)


def test_steepest_descent_point_matches_brute_force() -> None:
    x, y, _ = regression_data(128)
    result = suggest_lr(nn.Linear(4, 1), [(x, y)], nn.functional.mse_loss, steps=60)
    usable = len(result.losses) - (1 if result.diverged else 0)
    losses = result.losses[:usable]
    logs = [math.log(lr) for lr in result.lrs[:usable]]
    stop = losses.index(min(losses))
    slopes = []
    for i in range(stop + 1):
        lo, hi = max(i - 1, 0), min(i + 1, stop)
        slopes.append((losses[hi] - losses[lo]) / (logs[hi] - logs[lo]))
    assert result.suggested_lr == result.lrs[slopes.index(min(slopes))]


def test_problem_and_adam_factory() -> None:
    x, y, _ = regression_data(64)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 1))
    problem = Problem(
        model=model,
        data=[(x, y)],
        loss_fn=nn.functional.mse_loss,
        optimizer=lambda ps: torch.optim.Adam(ps),
    )
    before = copy.deepcopy(model.state_dict())
    result = suggest_lr(problem, steps=40)
    assert state_equal(model.state_dict(), before)
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) <= 40
    assert 1e-7 <= result.suggested_lr <= 10.0


def test_bad_arguments() -> None:
    model = nn.Linear(2, 1)
    data = [(torch.randn(4, 2), torch.randn(4, 1))]
    with pytest.raises(ValueError, match="min_lr"):
        suggest_lr(model, data, nn.functional.mse_loss, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        suggest_lr(model, data, nn.functional.mse_loss, steps=2)
    with pytest.raises(ValueError, match="data"):
        suggest_lr(model)
    with pytest.raises(ValueError, match="empty"):
        suggest_lr(model, [], nn.functional.mse_loss)


def test_tensor_lr_is_lowered_in_place() -> None:
    model = small_model()
    lr = torch.tensor(0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    guard = StepGuard(optimizer, factor=0.5)
    fill_grads(model, 0, poison=float("nan"))
    guard.step()
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.05)


def test_problem_grad_transforms_take_part_and_nan_loss_is_an_error() -> None:
    x, y, _ = regression_data(32)
    calls = []
    problem = Problem(
        model=nn.Linear(4, 1),
        data=[(x, y)],
        loss_fn=nn.functional.mse_loss,
        grad_transforms=(lambda model, optimizer: calls.append(1),),
    )
    result = suggest_lr(problem, steps=10, max_lr=1e-3)
    assert len(calls) == len(result.lrs) == 10 and not result.diverged
    bad = x.clone()
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="not finite even at min_lr"):
        suggest_lr(nn.Linear(4, 1), [(bad, y)], nn.functional.mse_loss)
