"""The labelled diagnosis suite: every problem diagnosed with the right kinds.

Each label is confirmed by a naive measurement written here (plain autograd on the
problem's first batch, or a plain training loop), independent of the detectors.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import graddoctor as gd

from ..architecture_truths import TRUTHS as ARCHITECTURE_TRUTHS
from ..diagnosis_problems import PROBLEMS

WEIGHT_TYPES = (nn.Linear, nn.Conv2d)

# problem -> (required kinds at warning or above, kinds also allowed, axis of gradient findings)
LABELS = {
    "exploding-regression": ({"nonfinite", "exploding_gradients"}, set(), "steps"),
    "relu5": ({"vanishing_gradients", "vanishing_activations"}, {"dead_units"}, "depth"),
    "relu5-bn": (set(), set(), None),
    "sigmoid-standard": ({"vanishing_gradients"}, set(), "depth"),
    "sigmoid-large-init": ({"saturated_activations"}, {"vanishing_gradients"}, None),
    "relu30-xavier": ({"vanishing_gradients", "vanishing_activations"}, {"dead_units"}, "depth"),
    "relu30-he": (set(), set(), None),
    "linear-w0.5": ({"vanishing_gradients", "vanishing_activations"}, set(), "depth"),
    "linear-w1.5": ({"exploding_gradients", "exploding_activations", "nonfinite"}, set(), "depth"),
    "tanh-rnn-0.5": ({"vanishing_gradients"}, set(), "time"),
    "tanh-rnn-3": ({"exploding_gradients"}, {"vanishing_gradients"}, "time"),
    "relu-rnn-0.5": ({"vanishing_gradients"}, set(), "time"),
    "relu-rnn-3": ({"exploding_gradients", "nonfinite"}, set(), "time"),
    "dead-relu": ({"dead_units"}, set(), None),
    "forward-nan": ({"nonfinite"}, set(), None),
    "backward-nan": ({"nonfinite"}, set(), None),
    "cnn-bn": (set(), set(), None),
    "pre-ln-transformer": (set(), set(), None),
    "lstm-short": (set(), set(), None),
    "selu-lecun": (set(), set(), None),
    "he-relu-mlp": (set(), set(), None),
    # real architectures (tests/architectures.py), truths in tests/architecture_truths.py
    "gpt2-tiny": (set(), set(), None),
    "gpt2-tiny-lr-too-high": ({"diverging_loss"}, set(), None),
    "nanogpt-tiny": (set(), set(), None),
    "nanogpt-tiny-clipped": (set(), set(), None),
    "bert-tiny": (set(), set(), None),
    "tanh20-normal": ({"saturated_activations", "exploding_gradients"}, {"vanishing_gradients"}, "depth"),
}


# -- naive measurements ---------------------------------------------------------------
def naive_layer_outputs(problem):
    """Run a Sequential model layer by layer; keep every output with its gradient."""
    model = copy.deepcopy(problem.model)
    x, y = problem.data[0]
    outputs = []
    h = x
    for name, child in model.named_children():
        h = child(h)
        h.retain_grad()
        outputs.append((name, child, h))
    problem.loss_fn(h, y).backward()
    return outputs


def naive_depth_ratio(problem) -> float:
    """||dL/d out|| of the first weight layer over the last one's."""
    weights = [(n, h) for n, m, h in naive_layer_outputs(problem) if isinstance(m, WEIGHT_TYPES)]
    first, last = weights[0][1].grad, weights[-1][1].grad
    return float(first.norm() / last.norm())


def naive_activation_ratio(problem) -> float:
    weights = [h for n, m, h in naive_layer_outputs(problem) if isinstance(m, WEIGHT_TYPES)][:-1]
    return float(weights[-1].detach().std(unbiased=False) / weights[0].detach().std(unbiased=False))


def naive_saturation(problem) -> float:
    worst = 0.0
    for _, module, h in naive_layer_outputs(problem):
        if isinstance(module, nn.Sigmoid):
            values = h.detach().flatten().tolist()
            worst = max(worst, sum(1 for v in values if v <= 0.01 or v >= 0.99) / len(values))
    return worst


def naive_dead_fraction(problem) -> float:
    worst = 0.0
    for _, module, h in naive_layer_outputs(problem):
        if isinstance(module, nn.ReLU):
            units = h.detach().T
            worst = max(worst, sum(1 for u in units if bool(torch.all(u == 0))) / len(units))
    return worst


def naive_time_ratio(problem) -> float:
    model = copy.deepcopy(problem.model)
    x, y = problem.data[0]
    x = x.clone().requires_grad_(True)
    problem.loss_fn(model(x), y).backward()
    return float(x.grad[:, 0].norm() / x.grad[:, -1].norm())


def naive_first_nonfinite_step(problem, steps=30):
    model = copy.deepcopy(problem.model)
    opt = problem.make_optimizer(model)
    for step, (x, y) in zip(range(steps), problem.batches()):
        opt.zero_grad()
        loss = problem.loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss) or not all(torch.isfinite(p).all() for p in model.parameters()):
            return step
    return None


def confirm_truth(name, problem):
    """The label's ground truth, measured naively."""
    if name in ARCHITECTURE_TRUTHS:
        return ARCHITECTURE_TRUTHS[name](problem)
    required, _, axis = LABELS[name]
    if "nonfinite" in required:
        assert naive_first_nonfinite_step(problem) is not None
    if name in ("forward-nan", "backward-nan", "exploding-regression"):
        return
    if axis == "time":
        ratio = naive_time_ratio(problem)
        assert ratio < 1e-3 if "vanishing_gradients" in required else ratio > 1e3
    elif axis == "depth":
        ratio = naive_depth_ratio(problem)
        assert ratio < 1e-3 if "vanishing_gradients" in required else ratio > 1e3
        act = naive_activation_ratio(problem)
        if "vanishing_activations" in required:
            assert act < 1e-3
        elif "exploding_activations" in required:
            assert act > 1e3
        else:
            assert 1e-3 < act < 1e3
    if "saturated_activations" in required:
        assert naive_saturation(problem) > 0.5
    if "dead_units" in required:
        assert naive_dead_fraction(problem) == 1.0
    if not required and name not in ("pre-ln-transformer", "lstm-short"):
        assert 1e-2 < naive_depth_ratio(problem) < 1e2
    if name == "lstm-short":
        assert 1e-3 < naive_time_ratio(problem) < 1e3


@pytest.fixture(scope="module")
def diagnoses(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    return {
        name: gd.checkup(build(), run_path=folder / f"{name}.gdr")
        for name, build in PROBLEMS.items()
    }


@pytest.mark.parametrize("name", sorted(LABELS))
def test_truth_of_label(name):
    confirm_truth(name, PROBLEMS[name]())


@pytest.mark.parametrize("name", sorted(LABELS))
def test_diagnosed_with_right_kinds(name, diagnoses):
    required, allowed, axis = LABELS[name]
    diagnosis = diagnoses[name]
    found = set(diagnosis.kinds("warning"))
    assert required <= found, f"{name}: missing {required - found}; found {found}"
    assert found <= required | allowed, f"{name}: wrong kinds {found - required - allowed}"
    assert diagnosis.healthy == (not required)
    for finding in diagnosis.findings:
        if (
            finding.kind in ("vanishing_gradients", "exploding_gradients")
            and finding.kind in required
        ):
            assert finding.evidence["axis"] in (axis, "steps")
        assert finding.message and finding.severity in gd.diagnosis.SEVERITIES
        if finding.severity != "info":
            assert finding.remedies and all(r in gd.REMEDY_IDS for r in finding.remedies)


def test_time_axis_evidence(diagnoses):
    finding = diagnoses["tanh-rnn-0.5"].of_kind("vanishing_gradients")[0]
    assert finding.evidence["axis"] == "time" and finding.layers == ["rnn"]
    assert finding.remedies[:2] == ["lstm", "gru"]
    assert finding.evidence["largest_singular_value"] == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize(
    "name, module, direction",
    [
        ("forward-nan", "log", "forward"),
        ("backward-nan", "sqrt", "backward"),
        ("relu-rnn-3", "rnn", "forward"),
    ],
)
def test_nonfinite_localised(name, module, direction, diagnoses):
    finding = diagnoses[name].of_kind("nonfinite")[0]
    assert finding.source["module"] == module and finding.source["direction"] == direction
    assert finding.severity == "critical" and finding.first_step is not None


def test_backward_only_nan_is_the_silent_case(diagnoses):
    finding = diagnoses["backward-nan"].of_kind("nonfinite")[0]
    assert "first_nonfinite_loss" not in finding.evidence  # the loss never went non-finite
    assert "only the gradients" in finding.message


def test_exploding_regression_remedies(diagnoses):
    diagnosis = diagnoses["exploding-regression"]
    assert diagnosis.of_kind("nonfinite")[0].remedies[:3] == [
        "standardize_target",
        "clip_norm",
        "lower_lr",
    ]
    assert diagnosis.remedies()[0] == "standardize_target"


def test_sigmoid_vanishing_recommends_non_saturating_activation(diagnoses):
    finding = diagnoses["sigmoid-standard"].of_kind("vanishing_gradients")[0]
    assert finding.remedies[0] == "swap_activation" and "batchnorm" in finding.remedies
    assert finding.evidence["decades"] > 3 and finding.layers == ["fc1", "fc9"]


def test_zero_lr_control_recorded(diagnoses):
    run = gd.open_run(diagnoses["he-relu-mlp"].run_path)
    steps, control = run.scalars("control/loss")
    assert steps.tolist() == list(range(23, 30)) and np.all(np.isfinite(control))
    assert diagnoses["he-relu-mlp"].extra["zero_lr"]["trains"] is True


def test_diagnose_a_recorded_run_gives_the_same_findings(diagnoses):
    for name in ("sigmoid-standard", "backward-nan", "tanh-rnn-0.5"):
        again = gd.diagnose(diagnoses[name].run_path)
        assert again.to_dict()["findings"] == diagnoses[name].to_dict()["findings"]


def test_checkup_never_changes_the_callers_model():
    problem = PROBLEMS["exploding-regression"]()
    before = copy.deepcopy(problem.model.state_dict())
    rng = torch.get_rng_state()
    gd.checkup(problem, steps=12)
    for key, value in problem.model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in problem.model.parameters())
    assert not any(m._forward_hooks for m in problem.model.modules())
    assert torch.equal(rng, torch.get_rng_state())


def test_checkup_accepts_model_data_loss(tmp_path):
    problem = PROBLEMS["he-relu-mlp"]()
    diagnosis = gd.checkup(
        problem.model,
        problem.data,
        problem.loss_fn,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
        steps=5,
        run_path=tmp_path / "a.gdr",
    )
    assert diagnosis.healthy and diagnosis.steps == 5


def test_checkup_bad_input(tmp_path):
    problem = PROBLEMS["he-relu-mlp"]()
    with pytest.raises(ValueError, match="loss must be a scalar"):
        gd.checkup(
            problem.model,
            problem.data,
            nn.MSELoss(reduction="none"),
            steps=2,
            run_path=tmp_path / "b.gdr",
        )
    with pytest.raises(ValueError, match="no trainable parameters"):
        gd.checkup(nn.Sequential(nn.ReLU()), problem.data, nn.MSELoss(), steps=2)
    with pytest.raises(TypeError, match="factory"):
        gd.checkup(
            problem.model,
            problem.data,
            nn.MSELoss(),
            optimizer=torch.optim.SGD(problem.model.parameters(), 0.1),
        )
    assert (tmp_path / "b.gdr").exists()  # what was recorded before the error is kept


def test_json_schema(diagnoses):
    data = diagnoses["backward-nan"].to_dict()
    assert set(data) == {"schema", "status", "healthy", "insufficient_data", "limits", "run_path",
                         "model", "steps", "summary", "findings"}
    assert data["schema"] == "graddoctor.diagnosis/2"
    finding = data["findings"][0]
    assert set(finding) == {
        "kind",
        "severity",
        "layers",
        "first_step",
        "evidence",
        "message",
        "remedies",
        "source",
    }
    assert set(finding["source"]) >= {"module", "direction", "step"}
