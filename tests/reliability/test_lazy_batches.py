"""Batches are drawn lazily: an infinite iterable or a huge step count costs nothing up front,
memory does not grow with ``steps``, and Ctrl-C stops a checkup at once."""

from __future__ import annotations

import itertools
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from graddoctor import Problem, checkup, open_run
from graddoctor.cli import app

HUGE = 10**9
FEATURES = 256  # a batch is 64 x 256 float32 = 64 KiB, allocated by numpy (traced)


class Stream:
    """An endless generator of batches that counts what was drawn and can fail on cue."""

    def __init__(self, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.drawn = 0
        self.nan_at, self.interrupt_at = nan_at, interrupt_at

    def __call__(self):
        rng = np.random.default_rng(0)
        while True:
            if self.drawn == self.interrupt_at:
                raise KeyboardInterrupt
            if self.drawn > 10_000:  # the whole list was being built up front
                raise AssertionError("batches were drawn far ahead of training")
            inputs = rng.standard_normal((64, FEATURES), dtype=np.float32)
            if self.drawn == self.nan_at:
                inputs[0, 0] = np.nan
            self.drawn += 1
            yield torch.from_numpy(inputs), torch.zeros(64, 1)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, 1))


def test_a_problem_takes_an_endless_generator_lazily():
    stream = Stream()
    problem = Problem(_model(), stream(), nn.MSELoss())
    assert stream.drawn == 0
    first = problem.take(3)
    assert stream.drawn == 3
    # every pass (a copy's too: the trials of compare) replays the same batches
    again = list(itertools.islice(problem.copy().batches(), 5))
    assert all(a is b for a, b in zip(first, again[:3], strict=True)) and stream.drawn == 5


def test_a_finite_one_shot_iterator_is_still_cycled():
    batches = [(torch.randn(2, 3), torch.randn(2, 1)) for _ in range(2)]
    problem = Problem(nn.Linear(3, 1), iter(batches), nn.MSELoss())
    assert [b[0] for b in problem.take(5)] == [batches[i % 2][0] for i in range(5)]


def test_data_that_yields_nothing_on_its_second_pass_is_refused():
    class SameGenerator:  # an iterable whose __iter__ always returns one exhausted generator
        def __init__(self):
            self.generator = iter([(torch.randn(2, 3), torch.randn(2, 1))])

        def __iter__(self):
            return self.generator

    problem = Problem(nn.Linear(3, 1), SameGenerator(), nn.MSELoss())
    with pytest.raises(ValueError, match="no batch when iterated again"):
        problem.take(3)


def test_checkup_memory_does_not_grow_with_steps(tmp_path):
    checkup(_model(), Stream()(), nn.MSELoss(), steps=2, run_path=tmp_path / "warm.gdr")
    peaks = {}
    for steps in (20, HUGE):
        stream = Stream(nan_at=10)
        tracemalloc.start()
        start = time.monotonic()
        diagnosis = checkup(
            _model(), stream(), nn.MSELoss(), steps=steps, run_path=tmp_path / f"{steps}.gdr"
        )
        peaks[steps] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.monotonic() - start < 60
        assert "nonfinite" in diagnosis.kinds()
        assert stream.drawn == 11  # up to the batch that broke training, none ahead
    # 11 batches are 0.7 MiB; a list of 10**9 would be tens of GiB
    assert peaks[HUGE] < 1.5 * peaks[20] + 2**20, peaks


def test_checkup_over_itertools_cycle_with_a_huge_step_count(tmp_path):
    batch = (torch.randn(8, 4), torch.randn(8, 1))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    diverges = lambda params: torch.optim.SGD(params, lr=1e6)  # noqa: E731
    start = time.monotonic()
    diagnosis = checkup(
        model,
        itertools.cycle([batch]),
        nn.MSELoss(),
        optimizer=diverges,
        steps=HUGE,
        run_path=tmp_path / "cycle.gdr",
    )
    assert time.monotonic() - start < 60 and "nonfinite" in diagnosis.kinds()


def test_ctrl_c_inside_the_loop_stops_the_checkup_at_once(tmp_path):
    stream = Stream(interrupt_at=30)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        checkup(_model(), stream(), nn.MSELoss(), steps=HUGE, run_path=tmp_path / "int.gdr")
    assert time.monotonic() - start < 30
    with open_run(tmp_path / "int.gdr") as run:  # the steps before Ctrl-C are in the file
        assert run.steps("grad_norm").size == 30
        _, control = run.scalars("control/loss")
        assert control.size == 0  # the zero-lr control waits for the last quarter of the steps


def test_the_zero_lr_control_sees_the_batches_training_saw(tmp_path):
    batches = [(torch.randn(8, 4) * (i + 1), torch.randn(8, 1)) for i in range(3)]
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    torch.manual_seed(0)
    checkup(model, batches, nn.MSELoss(), steps=12, run_path=tmp_path / "c.gdr")
    with open_run(tmp_path / "c.gdr") as run:
        steps, control = run.scalars("control/loss")
    with torch.no_grad():
        expected = [
            float(nn.MSELoss()(model(x), y))
            for x, y in itertools.islice(itertools.cycle(batches), 12)
        ]
    # the last quarter of the steps, the ones the diagnosis compares: every batch once here
    assert steps.tolist() == [9, 10, 11]
    np.testing.assert_allclose(control, expected[9:], rtol=1e-6)


TARGET = textwrap.dedent(
    """
    import torch
    from torch import nn
    from graddoctor import Problem

    def stream():
        torch.manual_seed(0)
        for i in range(50):  # a finite source: the checkup stops when the loss breaks
            x = torch.randn(16, 4)
            if i == 5:
                x[0, 0] = float("nan")
            yield x, torch.randn(16, 1)

    def endless():
        return Problem(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), stream(), nn.MSELoss())
    """
)


def test_cli_checkup_with_a_huge_step_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "target.py").write_text(TARGET)
    start = time.monotonic()
    result = CliRunner().invoke(
        app, ["checkup", "target.py:endless", "--steps", str(HUGE), "-o", "c.gdr"]
    )
    assert result.exit_code == 1, (result.output, result.exception)
    assert time.monotonic() - start < 60 and "NaN" in result.output
    too_many = CliRunner().invoke(app, ["checkup", "target.py:endless", "--steps", str(2**63)])
    assert too_many.exit_code == 2 and "--steps must be between 1 and" in too_many.output
