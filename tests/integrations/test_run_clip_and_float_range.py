"""``graddoctor run``: gradients read before the script's clipping, and no NaN replay for
finite float32 gradients whose norm overflows."""

from __future__ import annotations

import textwrap

import numpy as np
import torch

from graddoctor import open_run
from graddoctor.integrations._zero_code_nonfinite import nonfinite
from graddoctor.integrations.zero_code import run_instrumented
from graddoctor.probes.clipping import CLIP_FIRED, CLIP_TOTAL_NORM

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn

    scale, clip = float(sys.argv[1]), float(sys.argv[2])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-30)
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    for step in range(5):
        optimizer.zero_grad()
        loss = scale * nn.functional.mse_loss(model(x), y)
        loss.backward()
        norms = [p.grad.double().norm().item() for p in model.parameters()]
        print("norms", *norms)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)  # as nanoGPT
        optimizer.step()
    """
)


def run_script(tmp_path, scale, clip):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = run_instrumented(script, [str(scale), str(clip)], tmp_path / "runs")
    norms = [
        [float(v) for v in line.split()[1:]]
        for line in out.getvalue().splitlines()
        if line.startswith("norms")
    ]
    return result, np.array(norms)


def test_nonfinite_is_decided_from_the_entries_not_the_float32_norm():
    big = [torch.full((100, 100), 1e20), torch.ones(3)]  # finite: norm 1e22 overflows float32
    assert not nonfinite(torch.device("cpu"), torch.tensor(1.0), big)
    assert nonfinite(torch.device("cpu"), None, [torch.tensor([1.0, float("inf")])])
    assert nonfinite(torch.device("cpu"), None, [torch.tensor([float("nan")])])
    assert nonfinite(torch.device("cpu"), torch.tensor(float("nan")), big)
    assert not nonfinite(torch.device("cpu"), None, [None, torch.zeros(0)])


def test_run_reads_gradients_before_the_scripts_clip(tmp_path):
    result, norms = run_script(tmp_path, scale=1000.0, clip=1.0)
    assert result.exit_code == 0 and len(result.run_paths) == 1
    assert torch.nn.utils.clip_grad_norm_.__module__ == "torch.nn.utils.clip_grad"  # restored
    with open_run(result.run_paths[0]) as run:
        steps, _, grad_norm = run.series("grad_norm")
        # step 0 ran its clip before the run's Monitor existed (it starts at the first step)
        np.testing.assert_allclose(grad_norm[1:], norms[1:], rtol=1e-5)
        totals = np.sqrt((grad_norm[1:] ** 2).sum(axis=1))
        assert (totals > 10).all()  # before: exactly 1.0, the clip's threshold
        assert list(run.scalars(CLIP_FIRED)[1]) == [1.0] * 4
        np.testing.assert_allclose(run.scalars(CLIP_TOTAL_NORM)[1], totals, rtol=1e-5)


def test_finite_gradients_with_an_overflowing_norm_are_not_replayed(tmp_path, monkeypatch):
    from graddoctor.integrations import _zero_code_hooks

    replays = []
    monkeypatch.setattr(_zero_code_hooks, "localise", lambda *args: replays.append(args))
    # before: a float32 norm of inf from finite gradients of ~1e20 started a NaN replay
    result, norms = run_script(tmp_path, scale=1e21, clip=1e30)
    assert replays == []
    assert np.isfinite(norms).all() and (norms.max(axis=1) > 1e19).all()
    with open_run(result.run_paths[0]) as run:
        assert run.events("nonfinite_source") == [] and run.events("nonfinite_locate_failed") == []
        assert np.isfinite(run.series("grad_norm")[2]).all()
