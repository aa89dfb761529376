"""Where a NaN came from, said truthfully: the data, the loss, a module; localised or inferred."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

import graddoctor as gd
from graddoctor.demo import run_exploding_regression


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 1)))


X, Y = torch.randn(16, 4), torch.randn(16, 1)


def nonfinite(diagnosis):
    (finding,) = diagnosis.of_kind("nonfinite")
    return finding


def test_nan_in_the_input_batch_is_blamed_on_the_data(tmp_path):
    bad = X.clone()
    bad[2, 1] = float("nan")
    bad[5, 0] = float("inf")
    data = [(X, Y), (X, Y), (bad, Y), (X, Y)]
    finding = nonfinite(
        gd.checkup(mlp(), data, nn.MSELoss(), steps=6, run_path=tmp_path / "in.gdr")
    )
    assert finding.first_step == 2 and finding.source["direction"] == "input"
    assert finding.source["localised"] is True
    assert "the input batch (1 NaN and 1 Inf values at step 2)" in finding.message
    assert "the data is the cause" in finding.message
    assert finding.remedies == []  # no change to the model treats bad data


def test_nan_in_the_targets_is_blamed_on_the_data(tmp_path):
    bad = Y.clone()
    bad[3] = float("nan")
    data = [(X, Y), (X, bad)]
    finding = nonfinite(gd.checkup(mlp(), data, nn.MSELoss(), steps=4, run_path=tmp_path / "t.gdr"))
    assert finding.first_step == 1 and finding.source["what"] == "targets"
    assert "the targets of the batch (1 NaN and 0 Inf values at step 1)" in finding.message
    assert finding.remedies == []


def monitor_only(path, steps, make_loss, add_event=None):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for step in range(steps):
            optimizer.zero_grad()
            loss = make_loss(model, step)
            loss.backward()
            optimizer.step()
            monitor.log(loss=loss)
        if add_event:
            monitor.writer.add_event(*add_event)
    return gd.diagnose(path)


def test_nan_loss_at_step_0_of_a_monitor_run_is_the_loss_not_a_backward_pass(tmp_path):
    targets = Y.clone()
    targets[0] = float("nan")
    diagnosis = monitor_only(
        tmp_path / "m.gdr", 3, lambda m, s: nn.functional.mse_loss(m(X), targets)
    )
    finding = nonfinite(diagnosis)
    assert finding.first_step == 0
    assert finding.source == {
        "module": "",
        "direction": "loss",
        "step": 0,
        "localised": False,
        "inferred": True,
    }
    assert "backward" not in finding.message and "Not localised" in finding.message
    assert "inferred from the records: in the loss" in finding.message


def test_nan_input_without_replay_says_it_may_be_the_input(tmp_path):
    bad = X.clone()
    bad[0, 0] = float("nan")
    finding = nonfinite(
        monitor_only(
            tmp_path / "m.gdr", 5, lambda m, s: nn.functional.mse_loss(m(bad if s == 3 else X), Y)
        )
    )
    assert finding.first_step == 3 and finding.layers == ["fc1"]
    assert finding.source["localised"] is False and finding.source["inferred"] is True
    assert "or the input batch it was given" in finding.message
    assert finding.evidence["not_localised"] == "no replay of the failing step was recorded"


def test_failed_replay_is_said_and_the_module_labelled_inferred(tmp_path):
    def loss(model, step):
        out = model(X)
        return nn.functional.mse_loss(torch.log(out - 100) if step == 2 else out, Y)

    event = (
        2,
        "nonfinite_locate_failed",
        {"step": 2, "error": "RuntimeError: cannot replay a compiled model"},
    )
    finding = nonfinite(monitor_only(tmp_path / "m.gdr", 4, loss, add_event=event))
    assert (
        "Not localised (the replay of step 2 failed: RuntimeError: cannot replay a compiled model)"
        in finding.message
    )
    assert finding.source["inferred"] is True and finding.source["localised"] is False


def test_the_demo_and_the_finding_agree_on_where_the_gradients_broke(tmp_path):
    result = run_exploding_regression(tmp_path / "demo.gdr", epochs=1)
    finding = nonfinite(gd.diagnose(tmp_path / "demo.gdr"))
    # norms are exact across the float range: the step the demo shows as "the gradients
    # overflow" is the step whose gradient entries are non-finite, as the finding says
    assert result.first_bad_gradient_step == finding.evidence["first_nonfinite_gradients"] == 9
    assert finding.first_step == result.first_nonfinite_step
