"""The training Guard on real loops: skip, clip, roll back, give up; and bit-identical when healthy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd
from graddoctor.scenarios.exploding import exploding_problem

from .models import TinyGPT, gpt_loss, markov_batches

pytestmark = pytest.mark.filterwarnings("ignore::graddoctor.GradDoctorWarning")


def _train(problem, path, guard=None, epochs=1):
    model = problem.model
    optimizer = problem.optimizer(model.parameters())
    losses = []
    with gd.Monitor(model, optimizer, path=path, guard=guard, activations_every=None) as mon:
        for _ in range(epochs):
            for x, y in problem.data:
                optimizer.zero_grad()
                loss = problem.loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                mon.log(loss=loss)
                losses.append(float(loss))
    return model, losses


def test_the_exploding_regression_runs_to_the_end_under_the_guard(tmp_path):
    model, losses = _train(exploding_problem(), tmp_path / "bare.gdr")
    assert not all(torch.isfinite(p).all() for p in model.parameters())  # the lecture's NaN
    guard = gd.Guard()
    with pytest.warns(gd.GradDoctorWarning):
        model, losses = _train(exploding_problem(), tmp_path / "guarded.gdr", guard, epochs=3)
    assert len(losses) == 96 and all(torch.isfinite(p).all() for p in model.parameters())
    run = gd.open_run(tmp_path / "guarded.gdr")
    kinds = {e["kind"] for e in run.events()}
    assert kinds & {"guard_clipped", "guard_skipped"} and "guard_rollback" in kinds
    assert [e["kind"] for e in run.events() if e["kind"].startswith("guard")] == [
        e["kind"] for e in guard.interventions
    ]


def _mlp_run(guard, steps=25):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    with gd.Monitor(model, optimizer, path=None, guard=guard, activations_every=None) as mon:
        for _ in range(steps):
            x = torch.randn(16, 8, generator=g)
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), x[:, :1] * 2)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    return model, optimizer, mon


def test_a_healthy_run_is_bit_identical_with_and_without_the_guard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bare, bare_opt, _ = _mlp_run(None)
    guard = gd.Guard(snapshot_every=5)
    guarded, guarded_opt, mon = _mlp_run(guard)
    assert guard.interventions == [] and guard.rollbacks == 0
    for (name, a), b in zip(bare.state_dict().items(), guarded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(bare_opt.state.values(), guarded_opt.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert "step" not in vars(guarded_opt)  # the wrapper is gone after close
    assert mon.live.findings == []


def test_a_nonfinite_step_is_skipped_and_leaves_weights_and_state_untouched(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = gd.Guard(rollback=False)
    with gd.Monitor(model, optimizer, path=tmp_path / "r.gdr", guard=guard) as mon:
        for step in range(4):
            optimizer.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            if step == 2:
                model[2].weight.grad[0, 3] = float("nan")
                before = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
            optimizer.step()
            if step == 2:
                after = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
            mon.log(loss=loss)
    for k, v in before[0].items():
        assert torch.equal(v, after[0][k])
    for i, state in before[1]["state"].items():
        assert all(torch.equal(state[k], after[1]["state"][i][k]) for k in state)
    [event] = gd.open_run(tmp_path / "r.gdr").events("guard_skipped")
    assert event["step"] == 2 and event["reason"] == "nonfinite"
    assert event["parameters"] == {"2.weight": 1} and event["modules"] == ["2"]
    assert mon.step_index == 4  # the skipped step is a step of the run


def test_a_spike_is_clipped_to_k_times_the_running_median(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(6, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = gd.Guard(spike_factor=4.0, spike_window=5, rollback=False)
    norms = []
    with gd.Monitor(model, optimizer, path=tmp_path / "s.gdr", guard=guard):
        for step in range(8):
            optimizer.zero_grad()
            x = torch.randn(16, 6) * (1000.0 if step == 7 else 1.0)
            F.mse_loss(model(x), torch.zeros(16, 1)).backward()
            norms.append(
                torch.linalg.vector_norm(
                    torch.cat([p.grad.flatten() for p in model.parameters()])
                ).item()
            )
            if step == 7:
                copies = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
                for c, p in zip(copies, model.parameters(), strict=True):
                    c.grad = p.grad.clone()
                threshold = (
                    4.0 * torch.tensor(norms[2:7]).median().item()
                )  # the last 5 accepted norms
                torch.nn.utils.clip_grad_norm_(copies, threshold)  # PyTorch's clip, as reference
                expected = [c.detach() - 0.1 * c.grad for c in copies]
            optimizer.step()
    [event] = guard.interventions
    assert event["kind"] == "guard_clipped" and event["step"] == 7
    assert event["threshold"] == pytest.approx(threshold, rel=1e-5)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-4, atol=1e-6)


def test_nanogpt_at_a_too_high_learning_rate_is_rolled_back_and_recovers(tmp_path):
    batches = markov_batches(110)

    def train(guard):
        torch.manual_seed(0)
        model = TinyGPT()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=1.0, betas=(0.9, 0.95), weight_decay=0.1
        )
        losses = []
        with gd.Monitor(model, optimizer, path=tmp_path / f"{guard is None}.gdr", guard=guard,
                        activations_every=None) as mon:  # fmt: skip
            for x, y in batches:
                optimizer.zero_grad()
                loss = gpt_loss(model, x, y)
                loss.backward()
                optimizer.step()
                mon.log(loss=loss)
                losses.append(float(loss))
        return losses, optimizer

    guard = gd.Guard(snapshot_every=20)
    bare, _ = train(None)
    guarded, optimizer = train(guard)
    assert guard.rollbacks >= 1
    rollback = next(e for e in guard.interventions if e["kind"] == "guard_rollback")
    assert rollback["lr_after"][0] == pytest.approx(rollback["lr_before"][0] * 0.1)
    tail = lambda losses: sum(losses[-10:]) / 10  # noqa: E731
    assert tail(guarded) < 0.6 * tail(bare) and tail(guarded) < 0.6 * guarded[0]


def test_the_guard_gives_up_with_a_clear_error(tmp_path):
    guard = gd.Guard(max_rollbacks=0)
    with pytest.raises(gd.GuardGaveUp, match="gave up at step"):
        _train(exploding_problem(), tmp_path / "g.gdr", guard, epochs=2)
    run = gd.open_run(tmp_path / "g.gdr")
    assert run.events("guard_gave_up") and run.events("exception")


def test_snapshots_on_disk_are_restored_and_removed(tmp_path):
    guard = gd.Guard(snapshot_dir=tmp_path / "snaps", snapshot_every=2)
    model, _ = _train(exploding_problem(), tmp_path / "d.gdr", guard, epochs=2)
    assert guard.rollbacks >= 1 and all(torch.isfinite(p).all() for p in model.parameters())
    assert list((tmp_path / "snaps").iterdir()) == []


def test_the_guard_composes_with_gradscaler(tmp_path):
    """GradScaler skips its own NaN step (the Guard never sees it); the Guard clips a spike it lets through."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    guard = gd.Guard(spike_factor=5.0, rollback=False)
    with gd.Monitor(model, optimizer, path=tmp_path / "amp.gdr", scaler=scaler, guard=guard) as mon:
        for step in range(12):
            x = torch.randn(8, 4)
            if step == 6:
                x[0, 0] = float("nan")
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = (model(x).float() - 1).pow(2).mean() * (1e3 if step == 9 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            mon.log(loss=loss)
    assert [(e["step"], e["kind"]) for e in guard.interventions] == [(9, "guard_clipped")]
    steps, skipped = gd.open_run(tmp_path / "amp.gdr").scalars("amp_skipped")
    assert steps[skipped > 0].tolist() == [6]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_rollback_lr_reduction_survives_a_loop_that_sets_the_lr_every_step(tmp_path):
    """nanoGPT writes its cosine-schedule lr into every param group before each step: the
    Guard's reduction is applied around the real step, so the loop cannot undo it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = gd.Guard(spikes=None, bad_steps=1, bad_window=5, snapshot_every=1)
    seen = []
    original_step = optimizer.step

    def spy(*args, **kwargs):  # what the real step sees
        seen.append(optimizer.param_groups[0]["lr"])
        return original_step(*args, **kwargs)

    optimizer.step = spy
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with gd.Monitor(model, optimizer, tmp_path / "g.gdr", guard=guard) as mon:
        for step in range(8):
            for group in optimizer.param_groups:
                group["lr"] = 0.1  # the loop's own schedule, every step
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            if step == 3:
                model[0].weight.grad[0, 0] = float("nan")
            optimizer.step()
            mon.log(loss=loss.detach())
            assert optimizer.param_groups[0]["lr"] == 0.1  # the loop's value between steps
    assert guard.rollbacks == 1 and guard.lr_scale == pytest.approx(0.1)
    assert seen[:3] == [0.1] * 3 and seen[-1] == pytest.approx(0.01)
    rollback = next(e for e in guard.interventions if e["kind"] == "guard_rollback")
    assert rollback["lr_after"][0] == pytest.approx(0.01)
