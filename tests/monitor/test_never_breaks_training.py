"""Issue 12, the Monitor's side: it never raises into the training loop and never loses a run.

* ``log()`` checks its step, names and values when called; a bad one raises there and
  never reaches the commit inside ``optimizer.step()``.
* A Monitor whose creation fails leaves no file, so the retry on the same path works.
* Statistics still on the device are written by a commit on a pause (the collector).
* A measurement that fails (an unsupported tensor, a probe bug) warns once naming the
  statistic, records NaN for it, and training continues.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor.monitor._step import StepMeasurements
from graddoctor.probes._output_stats import PooledOutput
from graddoctor.probes.parameters import ParameterProbe


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def train(model, optimizer, monitor, steps, log=True):
    x = torch.randn(16, 4)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        if log:
            monitor.log(loss=loss.detach())  # a tensor: kept on the device until the commit


# -- log() -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.log(step=2**63, loss=torch.tensor(1.0)),
            r"step must be in \[0, 2\*\*63 - 1\]",
        ),
        (lambda m: m.log(step=-1, loss=torch.tensor(1.0)), "step must be in"),
        (lambda m: m.log(step=1.5, loss=torch.tensor(1.0)), "step must be an integer"),
        (lambda m: m.log(**{"bad\udc80name": torch.tensor(1.0)}), "not valid text"),
        (lambda m: m.log(loss=torch.tensor(1 + 2j)), "must be a real number"),
        (lambda m: m.log(loss=torch.ones(2)), "must have one element"),
        (lambda m: m.log(loss="high"), "must be a real number"),
    ],
)
def test_log_checks_at_call_time_and_every_later_step_is_recorded(tmp_path, call, message):
    # before: a tensor logged at step 2**63 was accepted, then every optimizer.step()
    # raised OverflowError from the commit and the file ended with 0 of 10 steps
    model, optimizer = small_model()
    path = tmp_path / "log.gdr"
    with Monitor(model, optimizer, path=path, commit_every=3) as monitor:
        with pytest.raises(ValueError, match=message):
            call(monitor)
        train(model, optimizer, monitor, 10)
    with open_run(path) as run:
        assert list(run.steps("grad_norm")) == list(range(10))
        assert list(run.scalars("loss")[0]) == list(range(10))


def test_a_value_logged_for_a_step_replaces_the_monitors_own(tmp_path):
    model, optimizer = small_model()
    path = tmp_path / "replace.gdr"
    with Monitor(model, optimizer, path=path) as monitor:
        train(model, optimizer, monitor, 2, log=False)
        monitor._pending.scalar(1, "clip/total_norm", torch.tensor(5.0))  # as the clip watch does
        monitor.log(step=1, **{"clip/total_norm": 7.0})
    with open_run(path) as run:
        assert list(run.scalars("clip/total_norm")[0]) == [1]
        assert list(run.scalars("clip/total_norm")[1]) == [7.0]


# -- creation ----------------------------------------------------------------------------


def test_a_failed_monitor_leaves_no_file_and_the_retry_works(tmp_path, monkeypatch):
    model, optimizer = small_model()
    path = tmp_path / "retry.gdr"
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        Monitor(model, optimizer, path=path, config=circular)
    assert list(tmp_path.iterdir()) == []

    def broken_arm(self, step, recording):
        raise RuntimeError("arming failed")

    monkeypatch.setattr(StepMeasurements, "arm", broken_arm)
    with pytest.raises(RuntimeError, match="arming failed"):
        Monitor(model, optimizer, path=path)  # fails after the file was created
    assert list(tmp_path.iterdir()) == []  # removed, with its sidecars
    assert len(optimizer._optimizer_step_pre_hooks) == 0  # and its hooks
    monkeypatch.undo()
    with Monitor(model, optimizer, path=path, config={"ok": 1}) as monitor:
        train(model, optimizer, monitor, 2)
    with open_run(path) as run:
        assert run.meta["config"] == {"ok": 1}
        assert list(run.steps("grad_norm")) == [0, 1]


# -- a commit on a pause -----------------------------------------------------------------


def test_a_pause_commits_the_statistics_still_on_the_device(tmp_path):
    model, optimizer = small_model()
    path = tmp_path / "pause.gdr"
    with Monitor(
        model, optimizer, path=path, commit_every=1000, commit_seconds=0.2, activations_every=1
    ) as monitor:
        train(model, optimizer, monitor, 5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # evaluation, checkpointing...
            time.sleep(0.1)
            with open_run(path) as run:
                if len(run.steps("grad_norm")) == 5:
                    break
        with open_run(path) as run:  # read while the Monitor is still open
            assert list(run.steps("grad_norm")) == list(range(5))
            assert list(run.steps("act_std")) == list(range(5))
            assert list(run.scalars("loss")[0]) == list(range(5))
        train(model, optimizer, monitor, 2)  # nothing is written twice
    with open_run(path) as run:
        assert list(run.steps("grad_norm")) == list(range(7))
        assert list(run.scalars("loss")[0]) == list(range(7))


# -- a failing measurement ---------------------------------------------------------------


def _fail(*args, **kwargs):
    raise RuntimeError("unsupported tensor")


def _run_with_warnings(path, steps=4, **options):
    model, optimizer = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(model, optimizer, path=path, activations_every=1, **options) as monitor:
            train(model, optimizer, monitor, steps)
    messages = [str(w.message) for w in caught if "graddoctor" in str(w.message)]
    return model, messages, open_run(path)


@pytest.mark.parametrize(
    ("target", "attribute", "statistic", "recorded"),
    [
        (ParameterProbe, "measure_grads", "grad_norm", "weight_norm"),
        (ParameterProbe, "measure_weights", "weight_norm", "grad_norm"),
        (ParameterProbe, "snapshot", "update_norm", "grad_norm"),
        (PooledOutput, "add", "act_mean", "grad_norm"),  # inside a forward hook
    ],
)
def test_a_failing_measurement_warns_once_and_training_continues(
    tmp_path, monkeypatch, target, attribute, statistic, recorded
):
    monkeypatch.setattr(target, attribute, _fail)
    model, messages, run = _run_with_warnings(tmp_path / "fail.gdr")
    assert len(messages) == 1, messages
    assert statistic in messages[0] and "unsupported tensor" in messages[0]
    assert "training continues" in messages[0]
    with run:
        assert list(run.steps(recorded)) == [0, 1, 2, 3]  # the other statistics are kept
        assert list(run.scalars("loss")[0]) == [0, 1, 2, 3]
        if statistic in run.stat_names():
            assert np.isnan(run.series(statistic)[2]).all()
        (event,) = run.events("measurement_failed")
        assert statistic in event["statistics"]
        assert "unsupported tensor" in event["error"]


def test_a_failing_gradient_hook_of_a_module_never_breaks_backward(tmp_path, monkeypatch):
    from graddoctor.probes import activations

    monkeypatch.setattr(activations, "squared_norm", _fail)
    model, messages, run = _run_with_warnings(tmp_path / "hook.gdr")
    assert len(messages) == 1 and "out_grad_norm" in messages[0], messages
    with run:
        assert np.isnan(run.series("out_grad_norm")[2]).all()
        assert np.isfinite(run.series("act_std")[2]).all()
        assert list(run.steps("grad_norm")) == [0, 1, 2, 3]


def test_a_failing_flush_keeps_training_and_later_steps(tmp_path, monkeypatch):
    from graddoctor.monitor import _pending

    real = _pending.PendingWriter._write
    calls = {"n": 0}

    def fail_once(self, writer):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device lost")
        return real(self, writer)

    monkeypatch.setattr(_pending.PendingWriter, "_write", fail_once)
    model, messages, run = _run_with_warnings(tmp_path / "flush.gdr", steps=6, commit_every=2)
    assert any("device lost" in m for m in messages), messages
    with run:
        steps = list(run.steps("grad_norm"))
        assert steps and steps[-1] == 5 and math.isfinite(run.series("grad_norm")[2][-1, 0])
