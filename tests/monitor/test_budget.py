"""The overhead budget: thinning follows the measured costs, statistics stay exact, explicit schedules win.

Timing is made deterministic with a clock whose every bracket costs a set time
(``CostClock``); the statistics recorded on the steps the budget keeps are checked
against the naive reference.
"""

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor.monitor import _step
from graddoctor.monitor._budget import (
    ACTIVATIONS,
    ALWAYS,
    DENSE_START,
    MAX_STRETCH,
    STEP,
    WEIGHTS,
    Budget,
)
from graddoctor.monitor._clock import Clock
from graddoctor.monitor._schedule_text import describe_schedule

from .. import reference


class CostClock(Clock):
    """Every bracket of ``what`` costs ``costs[what]`` seconds, whatever runs inside it."""

    def __init__(self, costs: dict[str, float]) -> None:
        super().__init__()
        self.costs = costs

    def start(self):
        return None

    def stop(self, token, what: str) -> None:
        self._add(what, self.costs.get(what, 0.0))


def drive(budget: Budget, steps: int) -> dict[str, list[int]]:
    """Run ``steps`` simulated steps: one bracket per statistic that is due."""
    measured: dict[str, list[int]] = {WEIGHTS: [], ACTIVATIONS: []}
    for step in range(steps):
        budget.timed(ALWAYS, lambda: None)
        for statistic in (WEIGHTS, ACTIVATIONS):
            if budget.due(statistic, step):
                budget.ran(statistic)
                budget.timed(statistic, lambda: None)
                measured[statistic].append(step)
        budget.step_done(step)
    return measured


def test_costly_statistics_thinned_to_fit_the_budget():
    costs = {STEP: 0.100, ALWAYS: 0.001, WEIGHTS: 0.020, ACTIVATIONS: 0.040}
    budget = Budget(0.03, CostClock(costs))
    measured = drive(budget, 400)
    # the dense start: every step's weights, activations every 10 steps
    assert [s for s in measured[WEIGHTS] if s < DENSE_START] == list(range(DENSE_START))
    assert [s for s in measured[ACTIVATIONS] if s < DENSE_START] == list(range(0, DENSE_START, 10))
    weights, activations = budget.every(WEIGHTS), budget.every(ACTIVATIONS)
    assert weights > 1 and activations > 10
    assert weights & (weights - 1) == 0 and (activations // 10) & (activations // 10 - 1) == 0
    # within the budget, against the step time without the Monitor's work
    per_step = costs[ALWAYS] + costs[WEIGHTS] / weights + costs[ACTIVATIONS] / activations
    plain = costs[STEP] - per_step
    assert per_step <= 0.03 * plain
    assert weights < MAX_STRETCH and activations < 10 * MAX_STRETCH  # not thinner than needed
    for statistic, steps in measured.items():  # each step measured as the history says
        history = budget.history[statistic]
        for step in range(400):
            every = [n for start, n in history if start <= step][-1]
            assert (step in steps) == (step % every == 0), (statistic, step)
    assert budget.history[WEIGHTS][0] == [0, 1] and budget.history[WEIGHTS][1][0] == DENSE_START
    assert budget.overhead is not None and budget.overhead <= 0.03  # the last window, thinned


class PausingClock(CostClock):
    """``CostClock`` whose every ``pause_every``-th step lasts ``pause`` seconds (an evaluation)."""

    def __init__(self, costs: dict[str, float], pause_every: int, pause: float) -> None:
        super().__init__(costs)
        self.pause_every, self.pause, self.steps = pause_every, pause, 0

    def stop(self, token, what: str) -> None:
        if what == STEP:
            self.steps += 1
            if self.steps % self.pause_every == 0:
                self._add(what, self.pause)
                return
        super().stop(token, what)


def test_pauses_of_the_loop_do_not_loosen_the_budget():
    """The step time is the median: a long evaluation every 10 steps (or another model
    trained in turn) is not time the Monitor may spend; the mean would allow 10x more."""
    costs = {STEP: 0.100, ALWAYS: 0.001, WEIGHTS: 0.020, ACTIVATIONS: 0.040}
    steady, paused = Budget(0.03, CostClock(costs)), Budget(0.03, PausingClock(costs, 10, 10.0))
    drive(steady, 400)
    drive(paused, 400)
    assert paused.every(WEIGHTS) == steady.every(WEIGHTS) >= 16
    assert paused.every(ACTIVATIONS) == steady.every(ACTIVATIONS)
    mean_step = 0.9 * costs[STEP] + 0.1 * 10.0  # what a mean would have taken as the step
    assert paused.overhead > 5 * (costs[ALWAYS] / mean_step)


def test_cheap_statistics_are_not_thinned():
    budget = Budget(
        0.03, CostClock({STEP: 0.010, ALWAYS: 0.0001, WEIGHTS: 0.0001, ACTIVATIONS: 0.0005})
    )
    measured = drive(budget, 300)
    assert measured[WEIGHTS] == list(range(300))
    assert measured[ACTIVATIONS] == list(range(0, 300, 10))
    assert budget.history == {WEIGHTS: [[0, 1]], ACTIVATIONS: [[0, 10]]}


def test_over_budget_gradients_alone_leave_the_rest_at_the_sparsest():
    budget = Budget(
        0.03, CostClock({STEP: 0.010, ALWAYS: 0.001, WEIGHTS: 0.001, ACTIVATIONS: 0.001})
    )
    drive(budget, 200)
    assert budget.every(WEIGHTS) == MAX_STRETCH
    assert budget.every(ACTIVATIONS) == 10 * MAX_STRETCH


def test_a_monitor_under_a_millisecond_is_not_thinned():
    budget = Budget(
        0.03, CostClock({STEP: 0.002, ALWAYS: 0.0002, WEIGHTS: 0.0003, ACTIVATIONS: 0.001})
    )
    measured = drive(budget, 300)
    assert measured[WEIGHTS] == list(range(300))


def test_no_budget_times_nothing_and_keeps_the_full_schedule():
    clock = CostClock({STEP: 1.0, WEIGHTS: 1.0, ACTIVATIONS: 1.0})
    budget = Budget(None, clock)
    assert not budget.timing
    measured = drive(budget, 250)
    assert measured[WEIGHTS] == list(range(250)) and clock.collect() == {}


@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (1.5, ValueError), ("3%", TypeError), (True, TypeError)]
)
def test_budget_is_checked(bad, error, tmp_path):
    model = nn.Linear(3, 2)
    with pytest.raises(error, match="budget"):
        Monitor(
            model, torch.optim.SGD(model.parameters(), lr=0.1), path=tmp_path / "b.gdr", budget=bad
        )
    assert not (tmp_path / "b.gdr").exists()


def _costly_clock(monkeypatch):
    costs = {STEP: 0.100, WEIGHTS: 0.010}  # a weight step costs 2 brackets: 20% of the step
    monkeypatch.setattr(_step, "clock_for", lambda device: CostClock(costs))


def _train(tmp_path, steps, **options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    named = list(model.named_parameters())
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    grads, weights = {}, {}
    path = tmp_path / "run.gdr"
    with Monitor(model, optimizer, path=path, **options) as mon:
        for step in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            grads[step] = reference.grad_stats(named)
            before = reference.weight_copies(named)
            optimizer.step()
            weights[step] = reference.weight_stats(named, before)
            mon.log(loss=loss)
    return open_run(path), grads, weights


def test_thinned_weights_are_absent_and_the_kept_ones_exact(monkeypatch, tmp_path):
    _costly_clock(monkeypatch)
    steps = 230
    run, grads, weights = _train(tmp_path, steps)
    schedule = run.meta["schedule"]
    assert schedule["weights"][0] == [0, 1] and schedule["weights"][1][0] == DENSE_START
    history = schedule["weights"]
    every = history[-1][1]
    assert every > 1 and schedule["gradients"] == "every step"
    expected = {s for s in range(steps) if s % [n for at, n in history if at <= s][-1] == 0}
    assert set(range(DENSE_START)) <= expected and len(expected) < DENSE_START + 30
    for stat in ("grad_norm", "grad_nonfinite"):
        recorded, names, values = run.series(stat)
        assert list(recorded) == list(range(steps))  # the gradient norms: every step
    for stat in ("grad_max", "weight_norm", "update_norm", "update_ratio"):
        recorded, names, values = run.series(stat)
        assert set(recorded.tolist()) == expected, stat
        assert not np.isnan(values).any()  # absent where thinned, never NaN
        for i, step in enumerate(recorded):
            for j, name in enumerate(names):
                source = grads if stat == "grad_max" else weights
                want = source[int(step)][name][stat]
                assert values[i, j] == pytest.approx(want, rel=1e-5, abs=1e-7), (stat, step, name)
    recorded, names, values = run.series("grad_norm")
    for step in (0, DENSE_START + 1, steps - 1):
        for j, name in enumerate(names):
            assert values[step, j] == pytest.approx(
                grads[step][name]["grad_norm"], rel=1e-5, abs=1e-7
            )
    line = describe_schedule(schedule)
    assert f"max |g|, weights and updates every {every} steps from step {history[-1][0]}" in line
    assert "budget 3% of the step" in line and "measured" in line


def test_explicit_schedules_win_over_the_budget(monkeypatch, tmp_path):
    _costly_clock(monkeypatch)
    run, _, _ = _train(tmp_path, 160, every=1, activations_every=7)
    assert list(run.steps("update_norm")) == list(range(160))
    assert list(run.steps("act_mean")) == list(range(0, 160, 7))
    schedule = run.meta["schedule"]
    assert schedule["weights"] == "with the gradients"
    assert schedule["activations"] == "every 7 steps"


def test_budget_off_records_the_full_schedule(monkeypatch, tmp_path):
    _costly_clock(monkeypatch)
    run, _, _ = _train(tmp_path, 160, budget=None)
    assert list(run.steps("update_norm")) == list(range(160))
    assert list(run.steps("act_mean")) == list(range(0, 160, 10))
    assert "no overhead budget" in describe_schedule(run.meta["schedule"])


def test_real_clock_schedule_matches_the_file(tmp_path):
    """Whatever the machine's timings, the weights are recorded on the schedule the run states."""
    run, _, _ = _train(tmp_path, 170)
    history = run.meta["schedule"]["weights"]
    recorded = set(run.steps("weight_norm").tolist())
    for step in range(170):
        every = [n for start, n in history if start <= step][-1]
        assert (step in recorded) == (step % every == 0), step
    assert list(run.steps("grad_norm")) == list(range(170))


class FakeEvent:
    """A CUDA event stand-in: recorded at a time; done once the test says the device passed it."""

    now = 0.0
    passed = 0.0  # the device has run everything recorded up to this time

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.at = None

    def record(self, stream=None):
        self.at = FakeEvent.now

    def query(self):
        return self.at <= FakeEvent.passed

    def elapsed_time(self, end):
        assert self.query() and end.query()
        return (end.at - self.at) * 1000.0  # milliseconds, as CUDA's


def test_cuda_clock_reads_only_what_the_device_finished(monkeypatch):
    from graddoctor.monitor._clock import CudaClock

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    FakeEvent.now, FakeEvent.passed = 0.0, -1.0
    clock = CudaClock(torch.device("cuda", 0))
    token = clock.start()
    FakeEvent.now = 0.25
    clock.stop(token, WEIGHTS)
    assert clock.collect() == {}  # queued, not finished: no wait
    FakeEvent.passed = 1.0
    assert clock.collect() == {WEIGHTS: pytest.approx(0.25)}
    assert clock.collect() == {}
    reused = clock.start()
    assert isinstance(reused, FakeEvent) and len(clock._free) == 1  # events are reused


def test_a_schedule_that_describes_itself_is_shown_in_its_words():
    from graddoctor.monitor._schedule_text import describe_every

    def odd(step):
        return step % 2 == 1

    assert describe_every(odd) == "custom (odd)"
    odd.description = "every odd step"
    assert describe_every(odd) == "every odd step"
    assert describe_every(lambda s: True) == "custom (<lambda>)"
