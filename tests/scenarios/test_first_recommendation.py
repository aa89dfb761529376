"""The first remedy the diagnosis recommends works: on every built-in scenario, applied by
``compare`` to the sick configuration, it does not diverge and ends below the baseline's loss."""

from __future__ import annotations

import math

import pytest

import graddoctor as gd
from graddoctor.experiment import compare
from graddoctor.scenarios import available, get_scenario


def sick_configuration(scenario):
    label = scenario.notes.get("compare_on", "baseline")
    return scenario.problem(label)


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
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
