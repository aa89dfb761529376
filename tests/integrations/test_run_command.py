"""Zero-code instrumentation (``graddoctor run``): examples/train_script.py run unmodified.

References: the script's training re-run by hand here with the naive statistics of
tests/reference.py, and a NaN source found by evaluating the model's modules one by one.
"""

from __future__ import annotations

import atexit
import io
import json
import math
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_module

from graddoctor import diagnose, open_run
from graddoctor.cli._run_command import run_script
from graddoctor.integrations.zero_code import Instrumentation, run_instrumented

from .. import reference

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_script.py"
RTOL = 1e-5


def global_state() -> dict:
    """Everything the instrumentation patches, to compare before and after."""
    return {
        "backward": torch.autograd.backward,
        "optimizer_pre": dict(optimizer_module._global_optimizer_pre_hooks),
        "optimizer_post": dict(optimizer_module._global_optimizer_post_hooks),
        "forward_pre": dict(module_hooks._global_forward_pre_hooks),
        "forward": dict(module_hooks._global_forward_hooks),
        "forward_always": dict(module_hooks._global_forward_hooks_always_called),
        "forward_kwargs": dict(module_hooks._global_forward_hooks_with_kwargs),
        "argv": list(sys.argv),
        "path": list(sys.path),
    }


@pytest.fixture
def restored():
    """Fails the test if any global patch or hook outlives it."""
    before = global_state()
    yield
    assert global_state() == before


def test_repeated_runs_restore_everything(tmp_path, restored, monkeypatch):
    registered, unregistered = [], []
    monkeypatch.setattr(atexit, "register", lambda f, *a, **k: registered.append(f) or f)
    monkeypatch.setattr(atexit, "unregister", unregistered.append)
    for _ in range(2):
        result = run_instrumented(SCRIPT, ["--steps", "4", "--diverge", "--stop-on-nan"], tmp_path)
        assert result.exit_code == 1 and len(result.run_paths) == 1
    ours = [f for f in registered if isinstance(getattr(f, "__self__", None), Instrumentation)]
    assert len(ours) == 2 and unregistered == ours


def script_namespace() -> dict:
    """The script's definitions, without running its main()."""
    return runpy.run_path(str(SCRIPT), run_name="train_script_reference")


def naive_training(steps: int, diverge: bool = False, stop_at_nonfinite: bool = False):
    """Re-run the script's seeded training by hand; per step: loss, grad and weight stats."""
    ns = script_namespace()
    torch.manual_seed(0)
    target_scale, lr = (100.0, 10.0) if diverge else (1.0, 0.01)
    x, y = ns["make_data"](1024, target_scale, 0)
    model = ns["Regressor"]()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    named = list(model.named_parameters())
    losses, grads, weights = [], [], []
    for step in range(steps):
        start = step * 32 % 1024
        inputs, targets = x[start : start + 32], y[start : start + 32]
        optimizer.zero_grad()
        loss = ((model(inputs) - targets) ** 2).mean()
        losses.append(loss.detach().item())
        if stop_at_nonfinite and not math.isfinite(losses[-1]):
            return model, inputs, losses
        loss.backward()
        grads.append(reference.grad_stats(named))
        before = reference.weight_copies(named)
        optimizer.step()
        weights.append(reference.weight_stats(named, before))
    return losses, grads, weights, [n for n, _ in named]


def first_nonfinite_module(model: nn.Module, inputs: torch.Tensor) -> str | None:
    """Naive forward: the first module (in call order) whose output is not finite."""
    order = [("body.0", model.body[0]), ("body.1", model.body[1]), ("body.2", model.body[2]),
             ("body.3", model.body[3]), ("head", model.head)]
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if not torch.isfinite(p).all():
                return name
    h = inputs
    with torch.no_grad():
        for name, module in order:
            h = module(h)
            if not torch.isfinite(h).all():
                return name
    return None


# ----------------------------------------------------------------------------- the script
def test_script_imports_nothing_from_graddoctor():
    source = SCRIPT.read_text()
    assert "graddoctor" not in source.split('"""', 2)[2]  # only its docstring mentions it


def test_healthy_run_matches_naive_reference(tmp_path, restored):
    result = run_instrumented(SCRIPT, ["--steps", "8", "--print-every", "100"], tmp_path, activations_every=2)
    assert result.exit_code == 0 and result.error is None
    assert len(result.run_paths) == 1 and result.run_paths[0].parent == tmp_path
    losses, grads, weights, names = naive_training(8)
    with open_run(result.run_paths[0]) as run:
        assert run.meta["model"]["type"] == "Regressor"
        assert run.meta["config"]["args"] == ["--steps", "8", "--print-every", "100"]
        assert run.meta["schedule"]["activations"] == "every 2 steps from step 1"  # not <lambda>
        steps, recorded_names, grad_norm = run.series("grad_norm")
        assert list(steps) == list(range(8)) and recorded_names == names
        expected = np.array([[g[n]["grad_norm"] for n in names] for g in grads])
        np.testing.assert_allclose(grad_norm, expected, rtol=RTOL)
        _, _, weight_norm = run.series("weight_norm")
        expected = np.array([[w[n]["weight_norm"] for n in names] for w in weights])
        np.testing.assert_allclose(weight_norm, expected, rtol=RTOL)
        loss_steps, loss = run.scalars("loss")
        assert list(loss_steps) == list(range(8))
        np.testing.assert_allclose(loss, losses, rtol=RTOL)
        # step 0's forward ran before the Monitor existed: activations start at step 1
        assert list(run.steps("act_mean")) == [2, 4, 6]
        assert run.events() == []
    assert diagnose(result.run_paths[0]).of_kind("nonfinite") == []


def test_diverging_run_reports_nonfinite_source_module(tmp_path, restored):
    result = run_instrumented(SCRIPT, ["--steps", "6", "--diverge", "--print-every", "100"], tmp_path)
    assert result.exit_code == 0
    model, inputs, losses = naive_training(6, diverge=True, stop_at_nonfinite=True)
    bad_step = len(losses) - 1
    expected_module = first_nonfinite_module(model, inputs)
    assert expected_module == "head"  # the script's divergence overflows its last layer
    with open_run(result.run_paths[0]) as run:
        _, loss = run.scalars("loss")
        np.testing.assert_allclose(loss[:bad_step], losses[:bad_step], rtol=RTOL)
        assert not np.isfinite(loss[bad_step])
        (event,) = run.events("nonfinite_source")
    assert event["step"] == bad_step and event["module"] == expected_module
    assert event["direction"] == "forward" and event["replay_loss"] == "MSELoss"
    (finding,) = diagnose(result.run_paths[0]).of_kind("nonfinite")
    assert finding.first_step == bad_step
    assert finding.source["module"] == expected_module and finding.layers == [expected_module]


def test_crash_on_nan_keeps_run_file_and_diagnosis(tmp_path, restored):
    result = run_instrumented(SCRIPT, ["--steps", "6", "--diverge", "--stop-on-nan"], tmp_path)
    assert result.exit_code == 1 and isinstance(result.error, FloatingPointError)
    assert result.traceback.splitlines()[0] == "Traceback (most recent call last):"
    assert "train_script.py" in result.traceback and "runpy" not in result.traceback
    assert result.traceback.rstrip().endswith("FloatingPointError: loss is inf at step 2")
    with open_run(result.run_paths[0]) as run:
        # the crashing step never stepped: its loss comes from the loss module's output
        steps, loss = run.scalars("loss")
        assert list(steps) == [0, 1, 2] and np.isinf(loss[2])
        kinds = [(e["kind"], e["step"]) for e in run.events()]
    assert kinds == [("nonfinite_source", 2), ("exception", 2)]
    (finding,) = diagnose(result.run_paths[0]).of_kind("nonfinite")
    assert finding.source["module"] == "head" and finding.first_step == 2


def test_run_script_prints_diagnosis_and_returns_exit_code(tmp_path, restored, capsys):
    out = io.StringIO()
    code = run_script(SCRIPT, ["--steps", "5", "--diverge", "--stop-on-nan"], tmp_path,
                      console=Console(file=out, width=160))
    assert code == 1
    text = out.getvalue()
    assert "nonfinite" in text and "forward pass of head" in text
    assert "the script ended with FloatingPointError: loss is inf at step 2" in text
    assert str(next(tmp_path.glob("train_script-*-opt0.gdr"))) in text
    assert "FloatingPointError: loss is inf" in capsys.readouterr().err

    out = io.StringIO()
    assert run_script(SCRIPT, ["--steps", "3"], tmp_path / "json", as_json=True, console=Console(file=out)) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line)["schema"] == "graddoctor.diagnosis/2" and out.getvalue() == ""


# ----------------------------------------------------------------------------- other scripts
def write_script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text("import sys, json\nimport torch\nfrom torch import nn\n" + textwrap.dedent(body))
    return path


def test_exit_code_argv_and_two_optimizers(tmp_path, restored):
    script = write_script(tmp_path, """
        torch.manual_seed(0)
        gen, disc = nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        opt_g, opt_d = torch.optim.SGD(gen.parameters(), lr=0.1), torch.optim.Adam(disc.parameters(), lr=0.01)
        losses = {"g": [], "d": []}
        for step in range(3):
            z = torch.randn(16, 3)
            opt_d.zero_grad()
            d_loss = disc(gen(z).detach()).pow(2).mean()
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = (disc(gen(z)) - 1).pow(2).mean()
            g_loss.backward()
            opt_g.step()
            losses["d"].append(d_loss.item()); losses["g"].append(g_loss.item())
        json.dump({"argv": sys.argv, "losses": losses, "name": __name__}, open(sys.argv[1], "w"))
        sys.exit(3)
    """)
    record = tmp_path / "record.json"
    result = run_instrumented(script, [str(record), "--flag"], tmp_path / "runs")
    assert result.exit_code == 3 and isinstance(result.error, SystemExit)
    seen = json.loads(record.read_text())
    assert seen["argv"] == [str(script), str(record), "--flag"] and seen["name"] == "__main__"
    assert [p.name.rsplit("-", 1)[1] for p in result.run_paths] == ["opt0.gdr", "opt1.gdr"]
    for path, key, model_type, first in zip(result.run_paths, "dg", ("Sequential", "Linear"), ("0.weight", "weight"),
                                            strict=True):
        with open_run(path) as run:
            assert run.meta["model"]["type"] == model_type and run.names("parameters")[0] == first
            np.testing.assert_allclose(run.scalars("loss")[1], seen["losses"][key], rtol=RTOL)
            assert [e["kind"] for e in run.events()] == ["exception"]


def test_script_without_optimizer_and_bad_input(tmp_path, restored, capsys):
    script = write_script(tmp_path, "print(nn.Linear(2, 2)(torch.ones(2)).shape)\n")
    out = io.StringIO()
    assert run_script(script, [], tmp_path, console=Console(file=out)) == 0
    assert "no optimizer stepped" in out.getvalue()
    with pytest.raises(FileNotFoundError, match="no training script"):
        run_instrumented(tmp_path / "missing.py")
    with pytest.raises(TypeError, match="list of arguments"):
        run_instrumented(script, "--lr 0.1")


def test_instrumentation_leaves_models_unhooked_and_cannot_nest(tmp_path, restored):
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(4, 3), nn.Linear(3, 4)
    loose = nn.Parameter(torch.ones(4))
    optimizer = torch.optim.SGD([*encoder.parameters(), *decoder.parameters(), loose], lr=0.1)
    x = torch.randn(8, 4)
    with Instrumentation(tmp_path, activations_every=1) as instrumentation:
        with pytest.raises(RuntimeError, match="already installed"):
            Instrumentation(tmp_path).install()
        for _ in range(3):
            optimizer.zero_grad()
            loss = ((decoder(encoder(x)) * loose - x) ** 2).mean()
            loss.backward()
            grads = {n: p.grad.norm().item() for n, p in [("encoder.weight", encoder.weight), ("param_0_4", loose)]}
            optimizer.step()
    with open_run(instrumentation.run_paths[0]) as run:
        # no single root owns every parameter: a container of both roots and the loose one
        assert run.names("parameters") == ["param_0_4", "linear.weight", "linear.bias", "linear_1.weight",
                                           "linear_1.bias"]
        assert run.meta["config"]["model_found"].startswith("container")
        _, names, last = run.at("grad_norm", 2)
        assert last[names.index("linear.weight")] == pytest.approx(grads["encoder.weight"], rel=RTOL)
        assert last[names.index("param_0_4")] == pytest.approx(grads["param_0_4"], rel=RTOL)
    for module in (encoder, decoder):
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


def test_backward_only_nan_with_functional_loss(tmp_path, restored):
    """A NaN born in backward (sqrt at 0), a loss with no loss module: surrogate replay."""
    script = write_script(tmp_path, """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(2, 2)
            def forward(self, x):
                return torch.sqrt(self.lin(x).clamp(min=0))
        torch.manual_seed(0)
        model = Model()
        with torch.no_grad():
            model.lin.weight.zero_(); model.lin.bias.zero_()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.ones(4, 2)
        for step in range(2):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), torch.ones(4, 2))
            loss.backward()
            optimizer.step()
    """)
    result = run_instrumented(script, [], tmp_path)
    with open_run(result.run_paths[0]) as run:
        (event,) = run.events("nonfinite_source")
        assert np.isfinite(run.scalars("loss")[1][0])
    assert event["step"] == 0 and event["replay_loss"] == "sum_of_outputs"
    assert event["direction"] == "backward" and event["module"] == ""  # sqrt runs in Model.forward itself
    assert event["op"] == "SqrtBackward0"


# ----------------------------------------------------------------------------- the real CLI
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = "from graddoctor.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_run_subprocess(tmp_path):
    if _cli("run", "--help", cwd=tmp_path).returncode != 0:
        pytest.skip("the `graddoctor run` command is not in graddoctor.cli yet")
    done = _cli("run", str(SCRIPT), "--json", "-o", str(tmp_path / "runs"), "--",
                "--steps", "5", "--diverge", "--print-every", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    diagnosis = json.loads(done.stdout.strip().splitlines()[-1])
    (finding,) = [f for f in diagnosis["findings"] if f["kind"] == "nonfinite"]
    assert finding["source"]["module"] == "head" and finding["first_step"] == 2
    assert len(list((tmp_path / "runs").glob("train_script-*-opt0.gdr"))) == 1
