"""Live findings while training runs, and the Guard's events in the diagnosis, ``show`` and the report."""

from __future__ import annotations

import logging
import warnings

import numpy as np
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


def _commit(live, first_step, norms, losses):
    rows = ("grad_norm", "grad_nonfinite")
    batch = []
    for k, (norm, loss) in enumerate(zip(norms, losses, strict=True)):
        values = np.array([norm, 0.0], dtype=np.float32)
        batch += [(first_step + k, "stats", "parameters", rows, values),
                  (first_step + k, "scalar", "loss", (), np.array([loss]))]  # fmt: skip
    live.observe(batch)


def test_a_long_run_still_gets_its_late_findings_and_keeps_each_commit_cheap(monkeypatch):
    """On a long run the step-axis tests rerun once a fraction more steps came (0.1%; 5%
    here, to show it on 20,000 steps), the NaN test at every commit; nothing is lost."""
    from graddoctor.monitor import live as live_module

    monkeypatch.setattr(live_module, "RELATIVE_DETECTION_DELAY", 0.05)
    runs = []
    original = live_module.first_growth
    monkeypatch.setattr(live_module, "first_growth",
                        lambda *a: runs.append(len(a[0])) or original(*a))  # fmt: skip
    rng = np.random.default_rng(0)
    live = live_module.LiveFindings(["layer.weight"])
    found = []
    live.on_finding = found.append
    for commit in range(200):
        norms = 1.0 + 0.1 * rng.random(100)
        losses = 2.0 + 0.1 * rng.normal(size=100)
        if commit == 150:
            norms[50] = 1e4  # a spike at step 15,050
        if commit == 190:
            losses[10] = float("nan")  # a NaN loss at step 19,010
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gd.GradDoctorWarning)
            _commit(live, 100 * commit, norms, losses)
    by_kind = {f.kind: f for f in found}
    assert by_kind["exploding_gradients"].first_step == 15_050
    assert by_kind["nonfinite"].first_step == 19_010
    assert 40 < len(runs) < 100  # every commit up to 2,000 steps, then rarer
    gaps = np.diff(runs)
    assert np.all(gaps <= np.maximum(100, 0.05 * np.asarray(runs[:-1]) + 100))
