"""Issue 10 item 5, the back-propagated signal: ``out_grad_norm``, ``time_grad_norm`` and the
sharded reduction exact at the edges of float32.

Squares of float32 entries below ~1e-19 underflow to 0 and above ~1.8e19 overflow to
inf; the depth findings' "decades" evidence reads ``out_grad_norm``. The truth is the
float64 norm of dLoss/dy computed by the test with ``torch.autograd.grad``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run

RTOL = 1e-5
# before: 1e-23 -> out_grad_norm 0 and time_grad_norm 0; 1e20 -> inf for both
MAGNITUDES = [1e-23, 1e-12, 1.0, 1e20]


class Scaled(nn.Module):
    """Linear -> Tanh -> Linear, the loss ``scale * sum(output * weights)``: dLoss/dOutput
    of the last layer is ``scale * weights``, entries of size ``scale``."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(5, 7)
        self.act = nn.Tanh()
        self.last = nn.Linear(7, 3)

    def forward(self, x):
        return self.last(self.act(self.first(x)))


def float64_norm(tensor: torch.Tensor) -> float:
    return math.sqrt(sum(v * v for v in tensor.double().flatten().tolist()))


@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_out_grad_norm_is_exact_across_the_float32_range(magnitude, tmp_path):
    torch.manual_seed(0)
    model = Scaled()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(4, 5)
    weights = torch.rand(4, 3, generator=torch.Generator().manual_seed(2)) + 0.5
    # the truth, from a separate forward in float64 autograd
    hidden = model.act(model.first(x))
    out = model.last(hidden)
    loss = (out * weights * magnitude).sum()
    d_out, d_hidden = torch.autograd.grad(loss, [out, hidden])
    truth = {"last": float64_norm(d_out), "act": float64_norm(d_hidden)}
    path = tmp_path / "out.gdr"
    with Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        optimizer.zero_grad()
        (model(x) * weights * magnitude).sum().backward()
        optimizer.step()
        monitor.log(loss=0.0)
    with open_run(path) as run:
        names = run.names("modules")
        recorded = run.series("out_grad_norm")[2][0]
    for name, expected in truth.items():
        value = recorded[names.index(name)]
        assert math.isfinite(value) and value > 0, (name, value)
        assert value == pytest.approx(expected, rel=RTOL), name


@pytest.mark.parametrize("magnitude", MAGNITUDES)
@pytest.mark.parametrize("cell", [False, True], ids=["sequence", "cell"])
def test_time_grad_norm_is_exact_across_the_float32_range(magnitude, cell, tmp_path):
    torch.manual_seed(0)
    rnn = nn.RNNCell(3, 4) if cell else nn.RNN(3, 4, batch_first=True)
    model = nn.Sequential(rnn)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(2, 5, 3)

    def loss_of(inputs):
        if cell:  # one call per time step, the hidden state carried
            h, total = None, 0.0
            for t in range(inputs.shape[1]):
                h = rnn(inputs[:, t], h)
                total = total + h.sum()
            return total * magnitude
        return rnn(inputs)[0].sum() * magnitude

    leaf = x.clone().requires_grad_(True)
    (d_x,) = torch.autograd.grad(loss_of(leaf), [leaf])
    truth = [float64_norm(d_x[:, t]) for t in range(x.shape[1])]
    path = tmp_path / "time.gdr"
    with Monitor(model, optimizer, path=path, activations_every=1) as monitor:
        optimizer.zero_grad()
        loss_of(x).backward()
        optimizer.step()
        monitor.log(loss=0.0)
    with open_run(path) as run:
        (stat,) = [s for s in run.stat_names() if s.startswith("time_grad_norm")]
        recorded = run.series(stat)[2][0]
    assert np.isfinite(recorded).all() and (recorded > 0).all(), recorded
    np.testing.assert_allclose(recorded, truth, rtol=RTOL)


def test_sharded_reduction_squares_in_float64():
    """One process in a gloo group, a sharded layout of one copy per parameter: the
    reduction squares local norms of 1e20 and 1e-23 without overflow or underflow."""
    import torch.distributed as dist

    from graddoctor.monitor.distributed import Layout, reduce_parameter_stats
    from graddoctor.probes._stat_block import StatBlock
    from graddoctor.probes.statistics import PARAMETER_STATS

    values = torch.full((len(PARAMETER_STATS), 3), 2.0)
    block = StatBlock(PARAMETER_STATS, values)
    block["grad_norm"] = torch.tensor([1e20, 1e-23, 3.0])
    block["weight_norm"] = torch.tensor([3e19, 1.0, 2e-22])
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        layout = Layout("sharded", 0, 1, [1.0, 1.0, 1.0])
        reduced = reduce_parameter_stats(block, [True, True, True], layout)
    finally:
        dist.destroy_process_group()
    # before: [inf, 0, 3] and [inf, 1, 0]
    np.testing.assert_allclose(reduced["grad_norm"].double().numpy(), [1e20, 1e-23, 3.0], rtol=1e-6)
    np.testing.assert_allclose(
        reduced["weight_norm"].double().numpy(), [3e19, 1.0, 2e-22], rtol=1e-6
    )
