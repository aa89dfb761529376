"""Issue 10 item 5: statistics exact across the float32 range, and beyond it for float64.

The truth is a float64 computation over the entries, written here and independent of
graddoctor: ``math.hypot`` of the entries (exact to rounding at any magnitude).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import Monitor, open_run
from graddoctor.probes.parameters import ParameterProbe
from graddoctor.store import RunWriter

RTOL = 1e-5


def naive_norm(tensor: torch.Tensor) -> float:
    return math.hypot(*[abs(complex(v)) for v in tensor.detach().flatten().tolist()])


def naive_max(tensor: torch.Tensor) -> float:
    return max(abs(complex(v)) for v in tensor.detach().flatten().tolist())


def pattern(shape, magnitude: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Entries of size 0.1..1 times ``magnitude`` with random signs, cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=g, dtype=torch.float64) * 0.9 + 0.1
    signs = torch.randint(0, 2, shape, generator=g).double() * 2 - 1
    return (values * signs * magnitude).to(dtype)


def record_one_step(dtype, grad_magnitude, path, weight_magnitude=None):
    """A Linear(40, 25) whose gradients (and weights) are set by hand before the step."""
    torch.manual_seed(0)
    model = nn.Linear(40, 25).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, optimizer, path=path) as monitor:
        model(torch.randn(3, 40).to(dtype)).float().sum().backward()
        with torch.no_grad():
            for seed, param in enumerate(model.parameters()):
                param.grad = pattern(param.shape, grad_magnitude, dtype, seed)
                if weight_magnitude is not None:
                    param.copy_(pattern(param.shape, weight_magnitude, dtype, seed + 10))
        optimizer.step()
        monitor.log(loss=0.0)
    return model, open_run(path)


def assert_parameter_stats(model, run, with_weights: bool):
    for j, (name, param) in enumerate(model.named_parameters()):
        assert run.names("parameters")[j] == name
        grad_norm = run.series("grad_norm")[2][0, j]
        assert math.isfinite(grad_norm), (name, grad_norm)
        assert grad_norm == pytest.approx(naive_norm(param.grad), rel=RTOL, abs=0), name
        assert run.series("grad_max")[2][0, j] == naive_max(param.grad)
        assert run.series("grad_nonfinite")[2][0, j] == 0
        if with_weights:
            weight_norm = run.series("weight_norm")[2][0, j]
            assert weight_norm == pytest.approx(naive_norm(param), rel=RTOL, abs=0), name


# before: 1e20 and 1e30 -> grad_norm inf (grad_nonfinite 0); 1e-23, 1e-30 -> 0
FLOAT32_MAGNITUDES = [
    1e-37,
    1e-30,
    1e-23,
    1e-19,
    1e-16,
    1e-8,
    1.0,
    1e10,
    1e19,
    1e20,
    1e30,
    1e37,
    3e38,
]


@pytest.mark.parametrize("magnitude", FLOAT32_MAGNITUDES)
def test_float32_gradient_norms_are_exact_across_the_range(magnitude, tmp_path):
    model, run = record_one_step(torch.float32, magnitude, tmp_path / "run.gdr")
    assert_parameter_stats(model, run, with_weights=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gradient_norms_are_exact(dtype, tmp_path):
    magnitudes = [1e-30, 1e30] if dtype == torch.bfloat16 else [1e-7, 6e4]
    for i, magnitude in enumerate(magnitudes):
        model, run = record_one_step(dtype, magnitude, tmp_path / f"{i}.gdr")
        assert_parameter_stats(model, run, with_weights=False)


# before: grad_norm, grad_max and weight_norm recorded as inf (the store kept float32)
@pytest.mark.parametrize("magnitude", [1e-300, 1e-200, 1e-50, 1e50, 1e200, 1e300])
def test_float64_models_keep_values_beyond_float32(magnitude, tmp_path):
    model, run = record_one_step(torch.float64, magnitude, tmp_path / "run.gdr", magnitude)
    assert_parameter_stats(model, run, with_weights=abs(math.log10(magnitude)) < 150)


def test_scalars_logged_as_float64_and_int64_tensors_keep_their_value(tmp_path):
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    values = {
        "huge": torch.tensor(1e50, dtype=torch.float64),
        "tiny": torch.tensor(1e-50, dtype=torch.float64),
        "count": torch.tensor(2**40 + 1),
        "precise": torch.tensor(1 + 2**-40, dtype=torch.float64),
    }
    with Monitor(model, optimizer, path=tmp_path / "run.gdr") as monitor:
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        monitor.log(**values)
    run = open_run(tmp_path / "run.gdr")
    for name, value in values.items():  # before: inf, 0, 1099511627776, 1.0
        assert run.scalars(name)[1][0] == value.item(), name


def test_store_keeps_float64_only_where_needed(tmp_path):
    writer = RunWriter(tmp_path / "run.gdr")
    writer.define_group("g", ["a", "b", "c", "d"])
    writer.define_stats("g", ["fits", "huge", "tiny"])
    writer.define_group("time:rnn", ["0", "1"])
    writer.define_stats("time:rnn", ["t"])
    writer.add_stat(0, "fits", np.array([1.5, np.nan, np.inf, 0.0]))
    writer.add_stat(0, "huge", np.array([1e50, 2.0, np.nan, -np.inf]))
    writer.add_stat(0, "tiny", np.array([1e-50, 1.0, 0.0, 3.0]))
    writer.add_stat(0, "t", np.array([1e300, 1.0]))  # then the group grows to 4 steps
    writer.define_group("time:rnn", ["0", "1", "2", "3"], extend=True)
    writer.add_stat(1, "t", np.array([1.0, 2.0, 3.0, 4.0]))
    writer.close()
    run = open_run(tmp_path / "run.gdr")
    np.testing.assert_array_equal(run.at("fits")[2], [1.5, np.nan, np.inf, 0.0])
    np.testing.assert_array_equal(run.at("huge")[2], [1e50, 2.0, np.nan, -np.inf])
    np.testing.assert_array_equal(run.series("tiny")[2][0], [1e-50, 1.0, 0.0, 3.0])
    np.testing.assert_array_equal(run.series("t")[2], [[1e300, 1.0, np.nan, np.nan], [1, 2, 3, 4]])
    sizes = dict(run._query("SELECT stat, length(value) FROM stats WHERE step = 0"))
    assert sizes == {"fits": 16, "huge": 33, "tiny": 33, "t": 17}  # float32 stays 4 bytes


def test_finite_and_nonfinite_gradients_in_one_step(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 30), nn.Linear(30, 2), nn.Linear(2, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, optimizer, path=tmp_path / "run.gdr") as monitor:
        model(torch.randn(3, 4)).sum().backward()
        model[0].weight.grad.fill_(1e25)  # finite, its fp32 norm overflows
        model[1].weight.grad[0, :3] = float("inf")  # truly non-finite
        model[2].weight.grad[1, 1] = float("nan")
        model[2].bias.grad.fill_(1e-25)  # finite, its fp32 norm underflows
        expected = {n: (naive_norm(p.grad), p.grad) for n, p in model.named_parameters()}
        optimizer.step()
        monitor.log(loss=0.0)
    run = open_run(tmp_path / "run.gdr")
    names = run.names("parameters")
    recorded = dict(zip(names, run.series("grad_norm")[2][0]))
    counts = dict(zip(names, run.series("grad_nonfinite")[2][0]))
    assert counts == {
        "0.weight": 0,
        "0.bias": 0,
        "1.weight": 3,
        "1.bias": 0,
        "2.weight": 1,
        "2.bias": 0,
    }
    assert recorded["1.weight"] == math.inf and math.isnan(recorded["2.weight"])
    for name in ("0.weight", "0.bias", "1.bias", "2.bias"):
        assert recorded[name] == pytest.approx(expected[name][0], rel=RTOL, abs=0), name


def count_host_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    for method in ("__bool__", "item", "tolist", "cpu", "numpy", "nonzero"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return reads


def test_one_host_read_per_healthy_step(monkeypatch):
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3), nn.Linear(3, 3))
    model[2].bias.requires_grad_(True)
    model(torch.randn(2, 5)).sum().backward()
    model[2].bias.grad = None  # a parameter without gradient this step
    probe = ParameterProbe(list(model.parameters()))
    probe.measure_grads()  # the size floors are copied to the device once
    reads = count_host_reads(monkeypatch)
    block = probe.measure_grads()
    assert reads == ["__bool__"]
    monkeypatch.undo()
    assert torch.isnan(block["grad_norm"][-1]) and block["grad_nonfinite"][:-1].eq(0).all()
    model[0].weight.grad.fill_(1e-30)  # out of range: the slow path may read once more
    reads = count_host_reads(monkeypatch)
    block = probe.measure_grads()
    monkeypatch.undo()
    assert reads[0] == "__bool__" and len(reads) <= 3, reads
    assert block["grad_norm"][0].item() == pytest.approx(1e-30 * math.sqrt(35), rel=RTOL, abs=0)


def test_fused_reductions_on_complex_and_float64_against_naive():
    from graddoctor._exact_norms import exact_norms, norm_floors, norms_in_range
    from graddoctor._foreach import max_abs, norms

    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(6, 3, generator=g, dtype=torch.complex64) * 1e10,
        torch.randn(6, 3, generator=g, dtype=torch.complex64) * 1e25,
        torch.randn(5, generator=g, dtype=torch.float64) * 1e200,
        torch.randn(4, 2, generator=g) * 1e-25,
        torch.zeros(3),
        torch.randn(0),
    ]
    fast, maxima = norms(tensors, 2.0), max_abs(tensors)
    assert fast.dtype == maxima.dtype == torch.float64
    in_range = norms_in_range(fast, maxima, norm_floors(tensors))
    assert in_range.tolist() == [True, False, False, False, True, True]
    exact = exact_norms(tensors, fast, maxima, ~in_range)
    for i, tensor in enumerate(tensors):
        want = naive_norm(tensor) if tensor.numel() else 0.0
        rel = 1e-6 if tensor.dtype == torch.complex64 and in_range[i] else 1e-12  # fast fp32
        assert exact[i].item() == pytest.approx(want, rel=rel, abs=0), i
        assert maxima[i].item() == pytest.approx(
            naive_max(tensor) if tensor.numel() else 0.0, rel=1e-7
        )
    assert norms(tensors[3:], 2.0).dtype == torch.float32
