"""Issue 10 item 6: norm clipping of half-precision gradients, and every norm type torch takes.

fp16 gradients whose norm overflows fp16 but whose entries are finite are measured in
float32, as the Monitor measures them; the reference is a float64 loop over the entries.
"""

import math

import pytest
import torch
from torch import nn

from graddoctor import clip

HALF = (torch.float16, torch.bfloat16)


def naive_norm(tensors, p: float) -> float:
    values = [abs(float(x)) for t in tensors for x in t.detach().double().flatten()]
    if math.isinf(p):
        return max(values)
    return sum(v**p for v in values) ** (1 / p)


def half_params(dtype: torch.dtype) -> list[nn.Parameter]:
    """Two tensors of finite entries whose fp16 norm (sqrt(1000) * 3000 = 94868) overflows."""
    params = []
    for size, value in ((1000, 3000.0), (7, -2.5)):
        param = nn.Parameter(torch.zeros(size, dtype=dtype))
        param.grad = torch.full((size,), value, dtype=dtype)
        params.append(param)
    return params


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("policy", ["raise", "skip", "zero", "propagate"])
@pytest.mark.parametrize("foreach", [None, False])
def test_half_gradients_with_finite_entries_are_clipped_not_called_nonfinite(
    dtype, policy, foreach
):
    # before (fp16): raise -> RuntimeError, skip -> gradients dropped, zero -> gradients 0,
    # all returning tensor(inf, dtype=float16)
    params = half_params(dtype)
    before = [p.grad.clone() for p in params]
    truth = naive_norm(before, 2.0)
    norm = clip.clip_grad_norm_(params, 1.0, foreach=foreach, nonfinite=policy)
    assert norm.dtype == torch.float32 and math.isfinite(norm.item())
    assert norm.item() == pytest.approx(truth, rel=1e-3 if dtype == torch.bfloat16 else 1e-5)
    for param, old in zip(params, before):
        assert param.grad is not None and param.grad.dtype == dtype
        want = old.double() * (1.0 / (norm.double() + 1e-6))
        torch.testing.assert_close(param.grad.double(), want, rtol=1e-2, atol=0)
    assert naive_norm([p.grad for p in params], 2.0) == pytest.approx(1.0, rel=1e-2)


@pytest.mark.parametrize("dtype", HALF)
def test_half_norms_per_layer_measuring_twin_and_quantile(dtype):
    params = half_params(dtype)
    grads = [p.grad.clone() for p in params]
    rel = 1e-3 if dtype == torch.bfloat16 else 1e-5
    total = clip.get_total_norm(grads, error_if_nonfinite=True)
    assert total.item() == pytest.approx(naive_norm(grads, 2.0), rel=rel)
    per_layer = clip.clip_grad_norm_(params, 1.0, nonfinite="raise", per_layer=True)
    assert per_layer.tolist() == pytest.approx([naive_norm([g], 2.0) for g in grads], rel=rel)
    clipper = clip.QuantileClipper(quantile=1.0, nonfinite="raise")
    params = half_params(dtype)
    assert clipper(params).item() == pytest.approx(naive_norm(grads, 2.0), rel=rel)


NORM_TYPES = [0.5, 1, 2, 3.5, 2.0, "2", "inf", float("inf"), True]


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=repr)
@pytest.mark.parametrize("foreach", [None, False])
def test_every_norm_type_torch_accepts_gives_torch_result(norm_type, foreach):
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn_like(a)
        b.grad = a.grad.clone()
    expected = nn.utils.clip_grad_norm_(theirs, 0.5, norm_type=norm_type, foreach=foreach)
    measured = clip.clip_grad_norm_(ours, 0.5, norm_type=norm_type, foreach=foreach)
    assert torch.equal(measured, expected)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
    p = float(norm_type)
    fresh = [torch.randn(4, 2) for _ in range(2)]
    got = clip.get_total_norm(fresh, norm_type, foreach=foreach)
    assert torch.equal(got, nn.utils.get_total_norm(fresh, norm_type, foreach=foreach))
    assert got.item() == pytest.approx(naive_norm(fresh, p), rel=1e-5)
    assert clip.QuantileClipper(norm_type=norm_type).norm_type == p


@pytest.mark.parametrize("norm_type", [0, 0.0, -1, -2.0, "-inf", float("nan"), "two", None])
def test_norm_types_that_are_not_norms_are_refused_with_the_reason(norm_type):
    param = nn.Parameter(torch.zeros(3))
    param.grad = torch.ones(3)
    with pytest.raises(ValueError, match="norm_type") as error:
        clip.clip_grad_norm_([param], 1.0, norm_type=norm_type)
    if norm_type in (0, -1):
        assert "not a norm" in str(error.value)
    with pytest.raises(ValueError, match="norm_type"):
        clip.get_total_norm([param.grad], norm_type)
