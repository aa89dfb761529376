"""What a checkup measures at which step: activation statistics on a sampled schedule, the
zero-learning-rate control on the steps the diagnosis compares, the diagnosis unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.checkup import DENSE_START, SAMPLED_STEPS, activation_schedule
from graddoctor.diagnosis.diagnose import zero_lr_window

from .diagnosis_problems import PROBLEMS


def scheduled(steps: int) -> list[int]:
    schedule = activation_schedule(steps)
    return [step for step in range(steps) if schedule(step)]


def test_the_activation_schedule_is_dense_at_first_then_evenly_spaced_to_the_last_step():
    assert scheduled(30) == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]
    assert scheduled(200) == [0, 1, 2, *range(20, 200, 20), 199]
    for steps in range(1, SAMPLED_STEPS + 1):  # a short checkup records every step
        assert scheduled(steps) == list(range(steps))
    for steps in (11, 37, 64, 1000):
        found = scheduled(steps)
        assert found[:DENSE_START] == list(range(DENSE_START)) and found[-1] == steps - 1
        assert len(found) <= DENSE_START + SAMPLED_STEPS + 1
        gaps = np.diff(found[DENSE_START - 1 :])
        assert gaps.max() <= -(-steps // SAMPLED_STEPS)  # no stretch of the run left unseen


def test_a_checkup_records_gradients_every_step_and_activations_on_the_schedule(tmp_path):
    path = tmp_path / "run.gdr"
    gd.checkup(PROBLEMS["relu5"](), steps=30, run_path=path)
    with gd.open_run(path) as run:
        assert run.steps("grad_norm").tolist() == list(range(30))
        assert run.steps("act_std").tolist() == scheduled(30)
        assert run.steps("out_grad_norm").tolist() == scheduled(30)
    every = tmp_path / "every.gdr"
    gd.checkup(PROBLEMS["relu5"](), steps=30, run_path=every, activations_every=1)
    with gd.open_run(every) as run:
        assert run.steps("act_std").tolist() == list(range(30))


@pytest.mark.parametrize("name", ["relu5", "sigmoid-large-init", "dead-relu", "tanh-rnn-0.5"])
def test_sampled_activations_give_the_diagnosis_of_every_step(name, tmp_path):
    """Saturation, dead units, depth and time profiles: the same findings either way."""
    sampled = gd.checkup(PROBLEMS[name](), run_path=tmp_path / "sampled.gdr")
    every = gd.checkup(PROBLEMS[name](), run_path=tmp_path / "every.gdr", activations_every=1)
    assert sampled.kinds() == every.kinds() and sampled.kinds()
    for mine, theirs in zip(sampled.findings, every.findings, strict=True):
        assert mine.layers == theirs.layers and mine.severity == theirs.severity


def test_the_zero_lr_control_is_the_untrained_models_loss_on_the_compared_steps(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(5)]
    diagnosis = gd.checkup(model, batches, nn.MSELoss(), steps=20, run_path=tmp_path / "c.gdr")
    with gd.open_run(tmp_path / "c.gdr") as run:
        steps, control = run.scalars("control/loss")
        loss_steps, trained = run.scalars("loss")
    assert zero_lr_window(20) == 5 and steps.tolist() == [15, 16, 17, 18, 19]
    with torch.no_grad():
        untrained = [float(nn.MSELoss()(model(x), y)) for x, y in batches]
    np.testing.assert_allclose(control, untrained, rtol=1e-6)  # steps 15..19 = batches 0..4
    evidence = diagnosis.extra["zero_lr"]
    assert evidence["loss_zero_lr"] == pytest.approx(np.mean(untrained), rel=1e-5)
    assert evidence["loss_trained"] == pytest.approx(np.mean(trained[15:]), rel=1e-5)


def test_at_step_0_the_control_is_the_training_forward(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    gd.checkup(model, [(x, y)], nn.MSELoss(), steps=1, run_path=tmp_path / "one.gdr")
    with gd.open_run(tmp_path / "one.gdr") as run:
        (step,), (control,) = run.scalars("control/loss")
        _, (trained,) = run.scalars("loss")
    with torch.no_grad():
        assert step == 0 and control == trained == pytest.approx(float(nn.MSELoss()(model(x), y)))


def test_without_the_control_nothing_is_logged_for_it(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    batches = [(torch.randn(8, 4), torch.randn(8, 1))]
    diagnosis = gd.checkup(
        model, batches, nn.MSELoss(), steps=8, run_path=tmp_path / "n.gdr", control=False
    )
    with gd.open_run(tmp_path / "n.gdr") as run:
        assert run.scalars("control/loss")[1].size == 0
    assert "zero_lr" not in diagnosis.extra
