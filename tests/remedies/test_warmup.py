"""The ``warmup`` remedy: a linear learning-rate warmup, checked against its formula and torch's LinearLR."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.remedies.lr import add_warmup_, linear_warmup_factor


def naive_factor(t: int, steps: int, start: float) -> float:
    """s + (1 - s) min(t, T) / T, written out."""
    done = t if t < steps else steps
    return start + (1.0 - start) * done / steps


def test_factor_matches_the_formula():
    for steps, start in [(1, 0.5), (5, 0.01), (20, 0.1)]:
        for t in range(30):
            assert linear_warmup_factor(t, steps, start) == pytest.approx(
                naive_factor(t, steps, start)
            )


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.AdamW])
def test_lrs_match_torch_linear_lr_step_by_step(optimizer_class):
    torch.manual_seed(0)
    ours, theirs = nn.Linear(3, 1), nn.Linear(3, 1)
    theirs.load_state_dict(ours.state_dict())
    opt_ours = optimizer_class(ours.parameters(), lr=0.2)
    opt_theirs = optimizer_class(theirs.parameters(), lr=0.2)
    add_warmup_(opt_ours, steps=6, start_factor=0.05)
    scheduler = torch.optim.lr_scheduler.LinearLR(opt_theirs, start_factor=0.05, total_iters=6)
    x = torch.randn(4, 3)
    for t in range(10):
        assert opt_ours.param_groups[0]["lr"] == pytest.approx(opt_theirs.param_groups[0]["lr"])
        assert opt_ours.param_groups[0]["lr"] == pytest.approx(0.2 * naive_factor(t, 6, 0.05))
        for model, optimizer in ((ours, opt_ours), (theirs, opt_theirs)):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
        scheduler.step()  # ours is stepped by its post-hook
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q)


def test_remedy_warms_up_the_problems_optimizer_and_leaves_it_alone():
    model = nn.Linear(3, 1)
    problem = gd.Problem(model, [(torch.randn(4, 3), torch.randn(4, 1))], nn.MSELoss(),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.5))  # fmt: skip
    warmed = gd.get_remedy("warmup").apply(problem, steps=4, start_factor=0.25)
    optimizer = warmed.make_optimizer(warmed.model)
    seen = []
    for batch in warmed.take(6):
        seen.append(optimizer.param_groups[0]["lr"])
        gd.train_step(warmed, warmed.model, optimizer, batch)
    assert seen == pytest.approx([0.5 * naive_factor(t, 4, 0.25) for t in range(6)])
    assert (
        problem.make_optimizer().param_groups[0]["lr"] == 0.5
    )  # the original factory is unchanged
    assert warmed.notes["remedies"] == [
        {"id": "warmup", "params": {"steps": 4, "start_factor": 0.25}}
    ]


def test_removing_the_hook_stops_the_warmup_where_it_is():
    optimizer = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=1.0)
    scheduler = add_warmup_(optimizer, steps=10, start_factor=0.1)
    optimizer.step()
    scheduler.warmup_hook.remove()
    optimizer.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(naive_factor(1, 10, 0.1))


@pytest.mark.parametrize(
    "params", [{"steps": 0}, {"steps": 2.5}, {"start_factor": 0.0}, {"start_factor": 1.5}]
)
def test_bad_settings_raise(params):
    with pytest.raises(ValueError, match="warmup"):
        add_warmup_(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1.0), **params)
    problem = gd.Problem(nn.Linear(2, 1), [(torch.randn(2, 2), torch.randn(2, 1))], nn.MSELoss())
    with pytest.raises(ValueError, match="warmup"):
        gd.get_remedy("warmup").apply(problem, **params)
