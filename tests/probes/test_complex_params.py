"""Issue 10 item 7: complex parameters are measured by their magnitudes.

Before, ``optimizer.step()`` raised under the Monitor (``aminmax`` has no complex
kernel). The reference is numpy on complex128 copies: ``sqrt(sum |z|^2)`` and ``max |z|``,
as ``torch.linalg.vector_norm`` defines the norm of a complex tensor.
"""

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run


def naive(array: np.ndarray) -> tuple[float, float]:
    magnitudes = np.abs(array.astype(np.complex128)).ravel()
    return float(np.sqrt(np.sum(magnitudes**2))), float(magnitudes.max())


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_linear_trained_with_sgd_under_the_monitor(dtype, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, dtype=dtype), nn.Linear(5, 2, dtype=dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(8, 6, dtype=dtype)
    target = torch.randn(8, 2, dtype=dtype)
    expected = []
    with Monitor(model, optimizer, path=tmp_path / "run.gdr") as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss = (model(x) - target).abs().pow(2).mean()
            loss.backward()
            grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
            before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
            optimizer.step()
            step = {}
            for name, param in model.named_parameters():
                after = param.detach().numpy().copy()
                grad_norm, grad_max = naive(grads[name])
                weight_norm, _ = naive(after)
                update_norm, _ = naive(after.astype(np.complex128) - before[name])
                step[name] = {
                    "grad_norm": grad_norm,
                    "grad_max": grad_max,
                    "grad_nonfinite": 0.0,
                    "weight_norm": weight_norm,
                    "update_norm": update_norm,
                    "update_ratio": update_norm / weight_norm,
                }
            expected.append(step)
            monitor.log(loss=loss)
    run = open_run(tmp_path / "run.gdr")
    names = run.names("parameters")
    assert names == [n for n, _ in model.named_parameters()]
    rtol = 1e-5  # the run file keeps float32 where the values fit it
    for stat in expected[0][names[0]]:
        steps, _, values = run.series(stat)
        assert list(steps) == [0, 1, 2]
        for i in range(3):
            for j, name in enumerate(names):
                want = expected[i][name][stat]
                assert values[i, j] == pytest.approx(want, rel=rtol, abs=1e-6 * rtol), (
                    stat,
                    i,
                    name,
                )
    assert np.isfinite(run.scalars("loss")[1]).all()
