"""Subprocess helpers shared by the reliability tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from graddoctor import RunWriter

# a small training loop under a Monitor; argv: path, steps, then whatever the caller adds
TRAIN = textwrap.dedent(
    """
    import sys, time, warnings
    import torch
    from graddoctor import Monitor
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 32), torch.randn(64, 1)

    def train(mon, steps):
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            mon.log(loss=loss.item())
    """
)


def python(code: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (this test run's PYTHONPATH), capturing its output."""
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def spawn(code: str, *args: str) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter, its stdout a text pipe."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def small_run(path, steps: int = 3, names=("a", "b", "c")) -> None:
    """A closed run file with ``steps`` steps of grad_norm and loss."""
    writer = RunWriter(path)
    writer.define_group("parameters", list(names))
    writer.define_stats("parameters", ["grad_norm"])
    for step in range(steps):
        writer.add_stat(step, "grad_norm", np.arange(len(names), dtype=np.float32) + step)
        writer.add_scalar(step, "loss", 1.0 / (step + 1))
    writer.close()


def monitored_run(path, steps: int = 3) -> None:
    """A closed run of a small MLP recorded by a Monitor (diagnosable)."""
    import torch

    from graddoctor import Monitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, opt, path=path, activations_every=1) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            opt.step()
            mon.log(loss=loss)
