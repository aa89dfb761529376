"""An honest verdict: ``healthy`` only with the evidence to judge; otherwise ``insufficient_data``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import graddoctor as gd
from graddoctor.cli import app
from graddoctor.diagnosis import EXIT_CODES, SCHEMA, STATUSES


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


X, Y = torch.randn(16, 4), torch.randn(16, 1)


def sgd_run(path, steps, log_loss=True):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(X), Y)
            loss.backward()
            optimizer.step()
            if log_loss:
                monitor.log(loss=loss)
    return gd.diagnose(path)


def lbfgs_run(path):
    model = mlp()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(X), Y)
        loss.backward()
        return loss

    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for _ in range(8):
            optimizer.zero_grad(set_to_none=True)
            monitor.log(loss=optimizer.step(closure))
    return gd.diagnose(path)


def no_gradient_run(path):
    """A loop whose optimizer steps parameters that never get a gradient (a zero_grad in
    the wrong place)."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        for _ in range(8):
            loss = nn.functional.mse_loss(model(X), Y)
            loss.backward()
            optimizer.zero_grad(set_to_none=True)  # the bug: before step, not before backward
            optimizer.step()
            monitor.log(loss=loss)
    return gd.diagnose(path)


def test_a_run_with_evidence_is_healthy(tmp_path):
    diagnosis = sgd_run(tmp_path / "ok.gdr", 12)
    assert diagnosis.status == "healthy" and diagnosis.healthy and diagnosis.exit_code == 0
    assert diagnosis.insufficient == []


def test_two_steps_are_not_enough(tmp_path):
    diagnosis = sgd_run(tmp_path / "short.gdr", 2)
    assert diagnosis.status == "insufficient_data" and not diagnosis.healthy
    assert diagnosis.insufficient == [
        "only 2 steps with gradients recorded (a verdict needs at least 5)"
    ]
    assert diagnosis.exit_code == EXIT_CODES["insufficient_data"] == 3
    assert diagnosis.summary.startswith("Not enough evidence to judge the run")


def test_no_loss_is_not_enough(tmp_path):
    diagnosis = sgd_run(tmp_path / "no-loss.gdr", 12, log_loss=False)
    assert diagnosis.status == "insufficient_data"
    assert any("no loss was recorded" in reason for reason in diagnosis.insufficient)


def test_no_gradient_recorded_is_not_healthy(tmp_path):
    diagnosis = no_gradient_run(tmp_path / "none.gdr")
    assert diagnosis.status == "insufficient_data"
    (reason,) = diagnosis.insufficient
    assert reason.startswith("no gradient was recorded")


def test_lbfgs_with_a_closure_is_judged_on_the_closures_gradients(tmp_path):
    diagnosis = lbfgs_run(tmp_path / "lbfgs.gdr")
    assert diagnosis.insufficient == [] and diagnosis.status == "healthy"
    steps, _, norms = gd.open_run(tmp_path / "lbfgs.gdr").series("grad_norm")
    assert steps[0] == 0 and np.isfinite(norms).all()  # measured at the closure's first call


def test_findings_win_over_missing_evidence(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.Monitor(model, optimizer, path=tmp_path / "nan.gdr") as monitor:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(X), torch.full_like(Y, float("nan")))
        loss.backward()
        optimizer.step()
        monitor.log(loss=loss)
    diagnosis = gd.diagnose(tmp_path / "nan.gdr")
    assert diagnosis.status == "findings" and diagnosis.exit_code == 1
    assert diagnosis.insufficient  # still said, in the JSON


def test_json_schema_2(tmp_path):
    data = json.loads(sgd_run(tmp_path / "short.gdr", 2).to_json())
    assert data["schema"] == SCHEMA == "graddoctor.diagnosis/2"
    assert data["status"] in STATUSES and data["status"] == "insufficient_data"
    assert (
        data["healthy"] is False and data["insufficient_data"] and isinstance(data["limits"], list)
    )


@pytest.mark.parametrize("steps, code, status", [(2, 3, "insufficient_data"), (12, 0, "healthy")])
def test_cli_diagnose_exit_codes(steps, code, status, tmp_path):
    path = tmp_path / "run.gdr"
    sgd_run(path, steps)
    result = CliRunner().invoke(app, ["diagnose", str(path), "--json"])
    assert result.exit_code == code and json.loads(result.output)["status"] == status
    shown = CliRunner().invoke(app, ["diagnose", str(path)])
    assert shown.exit_code == code
    assert ("insufficient data" in shown.output) == (status == "insufficient_data")
