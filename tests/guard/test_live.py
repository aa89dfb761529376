"""Live findings while training runs, and the Guard's events in the diagnosis, ``show`` and the report."""

from __future__ import annotations

import logging

import pytest
import torch

import graddoctor as gd
from graddoctor.scenarios.exploding import exploding_problem


def _train(path, **options):
    problem = exploding_problem()
    model, optimizer = problem.model, problem.optimizer(problem.model.parameters())
    with gd.Monitor(model, optimizer, path=path, commit_every=4, **options) as mon:
        for x, y in problem.data:
            optimizer.zero_grad()
            loss = problem.loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    return mon


def test_live_findings_are_reported_once_each_as_they_happen(tmp_path, caplog):
    seen = []

    def on_finding(finding):
        seen.append((finding.kind, finding.severity, finding.first_step, len(steps_committed())))

    run_path = tmp_path / "live.gdr"
    steps_committed = lambda: gd.open_run(run_path).steps()  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="graddoctor"):
        with pytest.warns(gd.GradDoctorWarning, match="graddoctor: nonfinite"):
            mon = _train(run_path, on_finding=on_finding)
    kinds = [(kind, severity) for kind, severity, *_ in seen]
    assert len(kinds) == len(set(kinds)) and ("nonfinite", "critical") in kinds
    assert ("exploding_gradients", "critical") in kinds
    first_nan = next(step for kind, _, step, _ in seen if kind == "nonfinite")
    assert all(committed < 32 for *_, committed in seen)  # said while training, not at the end
    assert any("nonfinite" in r.message for r in caplog.records)
    offline = gd.diagnose(run_path)
    assert offline.of_kind("nonfinite")[0].first_step == first_nan
    assert {k for k, _ in kinds} <= set(offline.kinds("warning")) | {"diverging_loss"}
    assert mon.live.findings and all(isinstance(f, gd.Finding) for f in mon.live.findings)


def test_a_healthy_run_has_no_live_finding(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen = []
    with gd.Monitor(
        model, optimizer, path=tmp_path / "h.gdr", on_finding=seen.append, commit_every=3
    ) as mon:
        for _ in range(30):
            x = torch.randn(8, 4)
            optimizer.zero_grad()
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            loss.backward()
            optimizer.step()
            mon.log(loss=loss)
    assert seen == []


@pytest.mark.filterwarnings("ignore::graddoctor.GradDoctorWarning")
def test_the_guards_events_reach_the_diagnosis_show_and_the_loss_curve(tmp_path):
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from graddoctor.cli import app
    from graddoctor.report._figures_curves import loss

    guard = gd.Guard()
    _train(tmp_path / "g.gdr", guard=guard)
    diagnosis = gd.diagnose(tmp_path / "g.gdr")
    assert "The Guard intervened" in diagnosis.summary
    assert diagnosis.to_dict()["guard"]["counts"] == {
        kind: sum(e["kind"] == kind for e in guard.interventions)
        for kind in {e["kind"] for e in guard.interventions}
    }
    shown = CliRunner().invoke(app, ["show", str(tmp_path / "g.gdr")])
    assert shown.exit_code == 0 and f"step {guard.interventions[0]['step']}: guard" in shown.output
    ax = loss(tmp_path / "g.gdr")
    assert len(ax.lines) == 1 + len(guard.interventions)
