"""compare(): identical starts, ranking, divergence, seeds, JSON; and the CLI around it."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import graddoctor as gd
from graddoctor.experiment import Comparison
from graddoctor.scenarios.regression import exploding_regression


def test_exploding_regression_remedies_ranked(tmp_path):
    comparison = gd.compare(exploding_regression(lr=0.1), ["lower_lr", ["init_he", "clip_value"]],
                            steps=64, out_dir=tmp_path)
    baseline = comparison.trial("baseline")
    assert baseline.diverged and baseline.diverged_at is not None and "nonfinite" in baseline.findings
    treated = comparison.trial("init_he+clip_value")
    assert not treated.diverged and math.isfinite(treated.final_loss)
    # the clip keeps the run finite but fires on every step: the Monitor sees the gradients
    # before it, and the diagnosis says the clipping hides exploding gradients (unscaled targets)
    assert treated.findings == ["exploding_gradients"]
    assert comparison.ranked()[-1].name == "baseline"  # diverged trials rank last
    steps, losses = gd.open_run(treated.run_paths[0]).scalars("loss")
    assert list(steps) == list(range(64)) and np.allclose(losses, treated.losses[0])
    assert (tmp_path / "comparison.json").exists()


def test_trials_start_from_the_same_weights_and_batches(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    data = [(torch.randn(16, 4), 0.1 * torch.randn(16, 1)) for _ in range(3)]
    problem = gd.Problem(model, data, nn.MSELoss(), name="tiny")
    comparison = gd.compare(problem, ["clip_norm"], steps=6, out_dir=tmp_path)
    # clip_norm with max_norm 1 does not bind on these small gradients: same trajectory
    base, clipped = comparison.trial("baseline"), comparison.trial("clip_norm")
    grads = gd.open_run(base.run_paths[0]).series("grad_norm")[2]
    assert np.sqrt((grads[0] ** 2).sum()) < 1.0
    assert base.losses[0][0] == clipped.losses[0][0]
    np.testing.assert_allclose(base.losses[0], clipped.losses[0], rtol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the caller's model was never trained


def test_seeds_give_mean_and_spread(tmp_path):
    def build(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        g = torch.Generator().manual_seed(seed)
        return gd.Problem(model, [(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))], nn.MSELoss())

    comparison = gd.compare(build, ["init_he"], steps=5, seeds=3, out_dir=tmp_path)
    trial = comparison.trial("init_he")
    assert len(trial.losses) == 3 and len(trial.run_paths) == 3
    finals = [np.mean(ls[-1:]) for ls in trial.losses]
    assert trial.final_loss == pytest.approx(np.mean(finals)) and trial.final_loss_spread == pytest.approx(np.std(finals))
    assert trial.final_loss_spread > 0


def test_json_round_trip_and_inapplicable_remedy(tmp_path):
    comparison = gd.compare(exploding_regression(), ["tbptt"], steps=3, out_dir=tmp_path)
    assert comparison.trial("tbptt").error  # an MLP has no recurrent core: said, not crashed
    again = Comparison.load(tmp_path / "comparison.json")
    assert [t.name for t in again.ranked()] == [t.name for t in comparison.ranked()]
    data = json.loads(comparison.to_json())
    assert data["schema"] == "graddoctor.comparison/1" and data["ranking"][-1] == "tbptt"


def test_cli_compare_report_and_plot(tmp_path, monkeypatch):
    from pathlib import Path

    from graddoctor.cli import app

    monkeypatch.chdir(tmp_path)
    examples = Path(__file__).resolve().parents[1] / "examples" / "problems.py"
    runner = CliRunner()
    result = runner.invoke(app, ["compare", f"{examples}:deep_sigmoid", "--steps", "8", "-o", "cmp", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert "swap_activation" in data["ranking"]  # no --remedy: the diagnosis's recommendations
    assert runner.invoke(app, ["report", "cmp", "-o", "r.html"]).exit_code == 0
    assert (tmp_path / "r.html").read_text().count("<img") >= 5
    run = data["trials"][0]["run_paths"][0]
    assert runner.invoke(app, ["plot", run, "--kind", "grad_vs_depth", "-o", "d.svg"]).exit_code == 0
    assert (tmp_path / "d.svg").read_text().lstrip().startswith("<?xml")
    bad = runner.invoke(app, ["plot", run, "--kind", "nope", "-o", "d.png"])
    assert bad.exit_code == 2 and "gradient_flow" in bad.output
    assert runner.invoke(app, ["compare", f"{examples}:deep_sigmoid", "--remedy", "clip_nrom"]).exit_code == 2
