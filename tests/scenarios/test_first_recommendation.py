"""The first remedy the diagnosis recommends works: on every built-in scenario, applied by
``compare`` to the sick configuration, it does not diverge and ends below the baseline's loss."""

from __future__ import annotations

import math

import pytest

import graddoctor as gd
from graddoctor.experiment import compare
from graddoctor.scenarios import available, get_scenario

# measured: nothing learns the 40-step recall in 50 SGD steps at lr 0.05, whatever the
# cell (final MSE: tanh RNN 0.807, LSTM 0.822, GRU 0.821, LSTM with forget-gate bias 3
# 0.804; even after 300 steps RNN 0.789, LSTM 0.821). The scenario shows the gradients
# through time, which the LSTM keeps 1e5x better; its loss cannot show the cure.
NOT_IN_THE_LOSS = {
    "rnn-long-range": "no recurrent cell learns the 40-step recall within the scenario's 50 SGD steps",
}


def sick_configuration(scenario):
    label = scenario.notes.get("compare_on", "baseline")
    return scenario.problem(label)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=NOT_IN_THE_LOSS[n]))
        if n in NOT_IN_THE_LOSS
        else n
        for n in available()
    ],
)
def test_first_recommendation_does_not_diverge_and_beats_the_baseline(name, tmp_path):
    scenario = get_scenario(name)
    sick = sick_configuration(scenario)
    diagnosis = gd.checkup(sick, steps=scenario.steps, run_path=tmp_path / "sick.gdr")
    first = diagnosis.remedies()[0]
    comparison = compare(sick, [first], steps=scenario.steps, out_dir=tmp_path / "compare")
    baseline, treated = comparison.trial("baseline"), comparison.trial(first)
    assert treated.error is None and not treated.diverged, (first, treated.diverged_at)
    assert math.isfinite(treated.final_loss)
    assert baseline.diverged or treated.final_loss < baseline.final_loss, (
        first, treated.final_loss, baseline.final_loss)  # fmt: skip


def test_sigmoid_saturation_first_remedy_is_the_swap_and_it_now_trains(tmp_path):
    """The issue's case: swap_activation diverged at step 6 at the scenario's lr 0.5; the
    remedy now lowers the lr to what a range test finds stable for the swapped model."""
    scenario = get_scenario("sigmoid-saturation")
    remedy = gd.get_remedy("swap_activation")
    treated = remedy.apply(scenario.baseline)
    lr = treated.make_optimizer(treated.model).param_groups[0]["lr"]
    assert 0 < lr < 0.5
    unchecked = remedy.apply(scenario.baseline, check_lr=False)
    assert unchecked.make_optimizer(unchecked.model).param_groups[0]["lr"] == 0.5
    losses = []
    model, optimizer = treated.model, treated.make_optimizer(treated.model)
    for batch in treated.take(40):
        losses.append(float(gd.train_step(treated, model, optimizer, batch)))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
