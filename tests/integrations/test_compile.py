"""``torch.compile``: parameter statistics exact, no graph break, losses unchanged, NaN replay eager.

References: the same compiled training without graddoctor (losses, dynamo's graph and
graph-break counters) and the naive per-parameter loops of tests/reference.py.
Compiling on a CPU takes seconds per model: the models are tiny and train a few steps;
one test uses the default (inductor) backend, the others ``aot_eager``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from graddoctor import Monitor, checkup, open_run
from graddoctor.integrations.zero_code import run_instrumented
from graddoctor.probes.nonfinite_replay import locate_nonfinite

from .. import reference
from .test_run_command import restored, write_script  # noqa: F401  (restored: a fixture)

pytestmark = pytest.mark.slow
STEPS = 4


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 12),
        nn.Tanh(),
        nn.Linear(12, 12),
        nn.LayerNorm(12),
        nn.ReLU(),
        nn.Linear(12, 1),
    )


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 6, generator=generator), torch.randn(8, 1, generator=generator))
        for _ in range(STEPS)
    ]


def dynamo_counts() -> dict:
    return {
        "graph_breaks": dict(counters["graph_break"]),
        "graphs": counters["stats"]["unique_graphs"],
    }


def train_compiled(backend: str, path: Path | None, how: str = "wrapper"):
    """Compiled training (with a Monitor when ``path`` is given): losses, naive statistics, dynamo counts."""
    torch._dynamo.reset()
    counters.clear()
    model = make_model()
    compiled = model
    if how == "in_place":
        model.compile(backend=backend)
    elif how == "submodule":
        model[2] = torch.compile(model[2], backend=backend)
    else:
        compiled = torch.compile(model, backend=backend)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    monitor = (
        Monitor(compiled, optimizer, path=path, activations_every=1) if path is not None else None
    )
    named = [(n.replace("._orig_mod", ""), p) for n, p in model.named_parameters()]
    losses, grads, weights = [], [], []
    for x, y in batches():
        optimizer.zero_grad()
        loss = ((compiled(x) - y) ** 2).mean()
        loss.backward()
        grads.append(reference.grad_stats(named))
        before = reference.weight_copies(named)
        optimizer.step()
        weights.append(reference.weight_stats(named, before))
        losses.append(loss.item())
        if monitor is not None:
            monitor.log(loss=loss)
    if monitor is not None:
        monitor.close()
    return losses, grads, weights, dynamo_counts()


def assert_parameter_stats(run, grads, weights) -> None:
    for stat, truth in (
        ("grad_norm", grads),
        ("grad_max", grads),
        ("weight_norm", weights),
        ("update_norm", weights),
        ("update_ratio", weights),
    ):
        steps, names, values = run.series(stat)
        assert list(steps) == list(range(STEPS))
        expected = np.array([[row[name][stat] for name in names] for row in truth])
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-9, err_msg=stat)


def test_compiled_monitor_exact_parameter_stats_no_graph_break_same_losses(tmp_path):
    """Default backend: the Monitor adds no graph and no graph break, skips activations once, aloud."""
    plain_losses, _, _, plain_counts = train_compiled("inductor", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, grads, weights, counts = train_compiled("inductor", tmp_path / "c.gdr")
    assert losses == plain_losses  # bit for bit
    assert counts == plain_counts and counts["graph_breaks"] == {}
    ours = [w for w in caught if str(w.message).startswith("graddoctor:")]
    assert len(ours) == 1 and "torch.compile" in str(ours[0].message)
    with open_run(tmp_path / "c.gdr") as run:
        assert run.names("parameters")[0] == "0.weight"  # the plain model's names
        assert_parameter_stats(run, grads, weights)
        np.testing.assert_allclose(run.scalars("loss")[1], plain_losses, rtol=1e-6)
        (event,) = run.events("activations_skipped")
        assert "torch.compile" in event["reason"]
        assert run.meta["schedule"]["activations"] == "never"  # what show prints
        assert (
            len(run.steps("act_std")) == 0 and len(run.steps("out_grad_norm")) == 0
        )  # nothing, not NaN


@pytest.mark.parametrize("how", ["in_place", "submodule"])
def test_compiled_inside_the_model_is_seen(tmp_path, how):
    """``model.compile()`` (no wrapper) or a compiled submodule: seen, and no graph break added."""
    plain_losses, _, _, plain_counts = train_compiled("aot_eager", None, how)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        losses, grads, weights, counts = train_compiled("aot_eager", tmp_path / "c.gdr", how)
    assert losses == plain_losses and counts == plain_counts and counts["graph_breaks"] == {}
    with open_run(tmp_path / "c.gdr") as run:
        assert_parameter_stats(run, grads, weights)
        assert len(run.events("activations_skipped")) == 1


class Exploding(nn.Module):
    def forward(self, x):
        return torch.exp(x * 1e4)


def exploding_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), Exploding(), nn.Linear(4, 1))


def test_locate_nonfinite_replays_the_eager_module():
    model = exploding_model()
    compiled = torch.compile(model, backend="aot_eager")
    x, y = torch.ones(3, 4), torch.zeros(3, 1)
    assert not torch.isfinite(nn.functional.mse_loss(compiled(x), y))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = locate_nonfinite(compiled, x, y, nn.functional.mse_loss)
    assert report is not None and report.module == "1" and report.direction == "forward"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model[1]._forward_hooks and not model[1]._forward_pre_hooks


def test_checkup_on_a_compiled_model_locates_the_nan(tmp_path):
    torch._dynamo.reset()
    compiled = torch.compile(exploding_model(), backend="aot_eager")
    data = [(torch.ones(3, 4), torch.zeros(3, 1))]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        diagnosis = checkup(
            compiled, data, nn.functional.mse_loss, steps=2, run_path=tmp_path / "c.gdr"
        )
    with open_run(diagnosis.run_path) as run:
        (event,) = run.events("nonfinite_source")
        assert event["module"] == "1" and event["direction"] == "forward"
        assert run.names("parameters")[0] == "0.weight"
        assert len(run.steps("act_std")) == 1 and not run.events(
            "activations_skipped"
        )  # checked eagerly


COMPILED_SCRIPT = """
    import numpy as np
    from torch._dynamo.utils import counters
    backend, record, use_compile = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_model = torch.compile(model, backend=backend) if use_compile else model
    generator = torch.Generator().manual_seed(1)
    losses, grad_norms = [], []
    for step in range(4):
        x, y = torch.randn(8, 6, generator=generator), torch.randn(8, 1, generator=generator)
        optimizer.zero_grad()
        loss = ((run_model(x) - y) ** 2).mean()
        loss.backward()
        grad_norms.append([float(np.sqrt((p.grad.double().numpy() ** 2).sum())) for p in model.parameters()])
        optimizer.step()
        losses.append(loss.item())
    json.dump({"losses": losses, "grad_norms": grad_norms, "graph_breaks": dict(counters["graph_break"]),
               "graphs": counters["stats"]["unique_graphs"]}, open(record, "w"))
"""


@pytest.mark.usefixtures("restored")
def test_graddoctor_run_on_a_compiled_script(tmp_path):
    script = write_script(tmp_path, COMPILED_SCRIPT)
    plain, instrumented = tmp_path / "plain.json", tmp_path / "instrumented.json"
    torch._dynamo.reset()
    counters.clear()
    import runpy
    import sys

    argv = sys.argv
    sys.argv = [str(script), "aot_eager", str(plain), "1"]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    torch._dynamo.reset()
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_instrumented(
            script, ["aot_eager", str(instrumented), "1"], tmp_path / "runs", activations_every=1
        )
    assert result.exit_code == 0, result.traceback
    seen, expected = json.loads(instrumented.read_text()), json.loads(plain.read_text())
    assert seen["losses"] == expected["losses"]
    assert seen["graph_breaks"] == {} and seen["graphs"] == expected["graphs"]
    assert not [
        w for w in caught if "global hooks" in str(w.message)
    ]  # torch's warning about our hooks
    ours = [str(w.message) for w in caught if str(w.message).startswith("graddoctor:")]
    assert len(ours) == 1, ours
    (path,) = result.run_paths
    with open_run(path) as run:
        assert run.meta["config"]["model_found"] == "root module"
        assert run.names("parameters") == ["0.weight", "0.bias", "2.weight", "2.bias"]
        np.testing.assert_allclose(run.series("grad_norm")[2], seen["grad_norms"], rtol=1e-5)
        np.testing.assert_allclose(run.scalars("loss")[1], seen["losses"], rtol=1e-6)
        assert len(run.events("activations_skipped")) == 1 and len(run.steps("act_std")) == 0
