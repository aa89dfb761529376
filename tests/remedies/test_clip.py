"""Tests for graddoctor.remedies.clip: equality with torch.nn.utils, naive loop references."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from graddoctor import clip as public_clip
from graddoctor.remedies import clip

# ---------------------------------------------------------------- fixtures and references


def model_with_grads(seed: int = 0, scale: float = 10.0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A small mixed model (conv, linear, norm, rnn) whose parameters hold random gradients."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Flatten(), nn.Linear(8, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    model = model.to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    return model


def grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def clone_with_grads(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)  # deepcopy drops .grad
    for p, q in zip(model.parameters(), twin.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return twin


def naive_total_norm(tensors: list[torch.Tensor], p: float) -> float:
    values = [abs(float(x)) for t in tensors for x in t.detach().double().flatten()]
    if math.isinf(p):
        return max(values)
    return sum(v**p for v in values) ** (1 / p)


def naive_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def param_with_grad(values) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(len(values), 1))
    p.grad = torch.tensor(values, dtype=torch.float32).view(-1, 1)
    return p


# ---------------------------------------------------------------- seed numbers


def test_seed_004_value_and_norm_clipping():
    p = param_with_grad([2.5, 0.8])
    clip.clip_value_([p], 1.0)
    assert p.grad.flatten().tolist() == pytest.approx([1.0, 0.8], abs=1e-7)
    p = param_with_grad([2.5, 0.8])
    norm = clip.clip_norm_([p], max_norm=1.0, norm_type=2)
    assert round(norm.item(), 4) == 2.6249
    assert [round(x, 4) for x in p.grad.flatten().tolist()] == [0.9524, 0.3048]
    assert p.grad.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_seed_000_norm_clipping_keeps_direction():
    p = param_with_grad([0.9, 100.0])
    clip.clip_norm_(p, 1.0)
    exact = [0.9 / math.hypot(0.9, 100.0), 100.0 / math.hypot(0.9, 100.0)]
    assert p.grad.flatten().tolist() == pytest.approx(exact, rel=1e-5)
    # the seed prints [0.00899, 0.999995]; the exact second entry is 0.99995950
    assert p.grad.flatten().tolist() == pytest.approx([0.00899, 0.999995], abs=5e-5)


# ---------------------------------------------------------------- equality with torch


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("foreach", [None, False])
def test_clip_norm_equals_torch(norm_type, max_norm, foreach):
    ours, theirs = model_with_grads(1), model_with_grads(1)
    norm = clip.clip_norm_(ours.parameters(), max_norm, norm_type, foreach=foreach)
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), max_norm, norm_type, foreach=foreach)
    assert torch.equal(norm, expected)
    for a, b in zip(grads(ours), grads(theirs)):
        assert torch.equal(a, b)


def test_clip_norm_mixed_dtypes_equals_torch():
    ours, theirs = model_with_grads(2), model_with_grads(2)
    ours[2].double()  # Module.double converts the gradients too
    theirs[2].double()
    norm = clip.clip_norm_(ours.parameters(), 1.0)
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
    torch.testing.assert_close(norm, expected, rtol=1e-7, atol=0)
    for a, b in zip(grads(ours), grads(theirs)):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-7, atol=0)


@pytest.mark.parametrize("foreach", [None, False])
def test_clip_value_equals_torch(foreach):
    ours, theirs = model_with_grads(4), model_with_grads(4)
    clip.clip_value_(ours.parameters(), 3.0, foreach=foreach)
    nn.utils.clip_grad_value_(theirs.parameters(), 3.0, foreach=foreach)
    for a, b in zip(grads(ours), grads(theirs)):
        assert torch.equal(a, b)
        assert a.abs().max() <= 3.0


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 3.0])
def test_total_norm_against_loop(norm_type):
    model = model_with_grads(5, scale=1.0)
    reference = naive_total_norm([p.grad for p in model.parameters()], norm_type)
    before = grads(model)
    assert total_norm_value(model.parameters(), norm_type) == pytest.approx(reference, rel=1e-5)
    # gradient tensors themselves (no requires_grad) are accepted, from a generator too
    assert total_norm_value((g for g in before), norm_type) == pytest.approx(reference, rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, grads(model)))  # measuring changes nothing


def total_norm_value(tensors, norm_type) -> float:
    return clip.total_norm(tensors, norm_type).item()


# ---------------------------------------------------------------- torch's names


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf, 3.0])
@pytest.mark.parametrize("foreach", [None, False])
def test_torch_named_functions_equal_torch(norm_type, foreach):
    ours, theirs = model_with_grads(7), model_with_grads(7)
    # get_total_norm: the norm of the tensors themselves (here the gradients), as torch's
    measured = public_clip.get_total_norm([p.grad for p in ours.parameters()], norm_type, foreach=foreach)
    expected = nn.utils.get_total_norm([p.grad for p in theirs.parameters()], norm_type, foreach=foreach)
    assert torch.equal(measured, expected)
    # ... so of parameters it is the norm of the weights, not of their gradients
    weights = public_clip.get_total_norm(list(ours.parameters()), norm_type)
    assert torch.equal(weights, nn.utils.get_total_norm(list(theirs.parameters()), norm_type))
    # clip_grad_norm_ with torch's positional arguments
    norm = public_clip.clip_grad_norm_(ours.parameters(), 0.5, norm_type, False, foreach)
    assert torch.equal(norm, nn.utils.clip_grad_norm_(theirs.parameters(), 0.5, norm_type, False, foreach))
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(theirs)))
    # clip_grads_with_norm_ with a norm measured elsewhere
    public_clip.clip_grads_with_norm_(ours.parameters(), 0.1, norm, foreach)
    nn.utils.clip_grads_with_norm_(theirs.parameters(), 0.1, norm, foreach)
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(theirs)))
    public_clip.clip_grad_value_(ours.parameters(), 1e-3, foreach)
    nn.utils.clip_grad_value_(theirs.parameters(), 1e-3, foreach)
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(theirs)))


def test_torch_named_nonfinite_behaviour():
    # torch's default propagates: the same nan/0 gradients, no error
    ours, theirs = poisoned_model(), poisoned_model()
    norm = public_clip.clip_grad_norm_(ours.parameters(), 1.0)
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
    assert torch.equal(norm.nan_to_num(7.0), expected.nan_to_num(7.0))
    for a, b in zip(grads(ours), grads(theirs)):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    # error_if_nonfinite=True raises before any gradient changes, as torch's
    model = poisoned_model()
    before = grads(model)
    with pytest.raises(RuntimeError, match="non-finite"):
        public_clip.clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        nn.utils.clip_grad_norm_(poisoned_model().parameters(), 1.0, error_if_nonfinite=True)
    for a, b in zip(before, grads(model)):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
    with pytest.raises(RuntimeError, match="non-finite"):
        public_clip.get_total_norm([p.grad for p in model.parameters()], error_if_nonfinite=True)
    # graddoctor's policies stay available as a keyword, overriding error_if_nonfinite
    skipped = poisoned_model()
    public_clip.clip_grad_norm_(skipped.parameters(), 1.0, error_if_nonfinite=True, nonfinite="skip")
    assert all(p.grad is None for p in skipped.parameters())


def test_old_names_are_the_new_functions_with_their_old_defaults():
    ours, theirs = model_with_grads(8), model_with_grads(8)
    norm = public_clip.clip_norm_(ours.parameters(), 0.5, 3.0)
    assert torch.equal(norm, public_clip.clip_grad_norm_(theirs.parameters(), 0.5, 3.0))
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(theirs)))
    public_clip.clip_value_(ours.parameters(), value=0.01)
    public_clip.clip_grad_value_(theirs.parameters(), clip_value=0.01)
    assert all(torch.equal(a, b) for a, b in zip(grads(ours), grads(theirs)))
    assert torch.equal(public_clip.total_norm(ours.parameters()), public_clip.get_total_norm(grads(theirs)))
    with pytest.raises(RuntimeError):  # clip_norm_ keeps nonfinite="raise" by default
        public_clip.clip_norm_(poisoned_model().parameters(), 1.0)


# ---------------------------------------------------------------- edge cases


def test_params_without_grad_empty_and_generators():
    model = model_with_grads(6)
    model[0].weight.grad = None
    reference = clone_with_grads(model)
    norm = clip.clip_norm_((p for p in model.parameters()), 1.0)
    expected = nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    assert torch.equal(norm, expected)
    assert model[0].weight.grad is None
    assert torch.equal(clip.clip_norm_([], 1.0), torch.tensor(0.0))
    assert torch.equal(clip.total_norm([]), torch.tensor(0.0))
    assert torch.equal(clip.clip_norm_([nn.Parameter(torch.ones(2))], 1.0), torch.tensor(0.0))
    clip.clip_value_([], 1.0)  # nothing to do, no error


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtype_kept_and_equal_to_torch(dtype):
    ours, theirs = model_with_grads(7, scale=0.5, dtype=dtype), model_with_grads(7, scale=0.5, dtype=dtype)
    norm = clip.clip_norm_(ours.parameters(), 1.0)
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
    if dtype in (torch.float16, torch.bfloat16):  # accumulated in float32 (torch: in dtype)
        assert norm.dtype == torch.float32
        torch.testing.assert_close(norm, expected.float(), rtol=1e-2, atol=0)
    else:
        assert norm.dtype == expected.dtype
        assert torch.equal(norm, expected)
    for a, b in zip(grads(ours), grads(theirs)):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=0 if dtype == torch.float64 else 1e-2, atol=0)
    clip.clip_value_(ours.parameters(), 0.1)
    assert all(p.grad.dtype == dtype and p.grad.abs().max() <= 0.1 for p in ours.parameters())


def test_bad_arguments():
    p = param_with_grad([1.0, 2.0])
    with pytest.raises(ValueError, match="max_norm"):
        clip.clip_norm_([p], -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip.clip_norm_([p], 1.0, norm_type=0)
    with pytest.raises(ValueError, match="nonfinite"):
        clip.clip_norm_([p], 1.0, nonfinite="ignore")
    with pytest.raises(ValueError, match="value"):
        clip.clip_value_([p], 0.0)
    with pytest.raises(TypeError, match="iterable of tensors"):
        clip.clip_norm_(3.0, 1.0)
    with pytest.raises(TypeError, match="tensors only"):
        clip.clip_norm_([p, "w"], 1.0)


# ---------------------------------------------------------------- non-finite policies


def poisoned_model() -> nn.Module:
    model = model_with_grads(8)
    model[2].weight.grad[0, 0] = float("nan")
    model[4].bias.grad[1] = float("inf")
    return model


def test_nonfinite_raise_leaves_grads():
    model = poisoned_model()
    before = grads(model)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip.clip_norm_(model.parameters(), 1.0)
    for a, b in zip(before, grads(model)):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_nonfinite_skip_makes_the_step_a_no_op():
    model = model_with_grads(9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    optimizer.step()  # momentum buffers now exist: a zero gradient would still move weights
    model[2].weight.grad = torch.full_like(model[2].weight, float("nan"))
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.ones_like(p)
    weights = [p.detach().clone() for p in model.parameters()]
    norm = clip.clip_norm_(model.parameters(), 1.0, nonfinite="skip")
    assert norm.isnan()
    assert all(p.grad is None for p in model.parameters())
    optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(weights, model.parameters()))


def test_nonfinite_zero_cleans_then_clips():
    model = poisoned_model()
    reference = clone_with_grads(model)
    for p in reference.parameters():
        p.grad = torch.where(torch.isfinite(p.grad), p.grad, torch.zeros_like(p.grad))
    expected = nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    norm = clip.clip_norm_(model.parameters(), 1.0, nonfinite="zero")
    assert torch.equal(norm, expected)
    for a, b in zip(grads(model), grads(reference)):
        assert torch.equal(a, b)


def test_nonfinite_propagate_equals_torch():
    ours, theirs = poisoned_model(), poisoned_model()
    norm = clip.clip_norm_(ours.parameters(), 1.0, nonfinite="propagate")
    expected = nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
    assert norm.isnan() and expected.isnan()
    for a, b in zip(grads(ours), grads(theirs)):
        assert torch.equal(a.isnan(), b.isnan())


# ---------------------------------------------------------------- per-layer clipping


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
@pytest.mark.parametrize("foreach", [None, False])
def test_per_layer_equals_torch_per_tensor(norm_type, foreach):
    ours, theirs = model_with_grads(10), model_with_grads(10)
    ours[3].weight.grad.mul_(1e-3)  # one tensor under the bound: must stay untouched
    theirs[3].weight.grad.mul_(1e-3)
    untouched = ours[3].weight.grad.clone()
    before = grads(ours)
    norms = clip.clip_norm_(ours.parameters(), 1.0, norm_type, per_layer=True, foreach=foreach)
    expected = [nn.utils.clip_grad_norm_([p], 1.0, norm_type) for p in theirs.parameters()]
    assert torch.equal(norms, torch.stack(expected))
    for a, b in zip(grads(ours), grads(theirs)):
        assert torch.equal(a, b)
        assert torch.linalg.vector_norm(a, norm_type) <= 1.0 + 1e-5
    assert torch.equal(ours[3].weight.grad, untouched)
    reference = [naive_total_norm([g], norm_type) for g in before]
    assert norms.tolist() == pytest.approx(reference, rel=1e-5)


def test_per_layer_nonfinite_raise():
    with pytest.raises(RuntimeError, match="per-tensor"):
        clip.clip_norm_(poisoned_model().parameters(), 1.0, per_layer=True)


# ---------------------------------------------------------------- clipping during backward


def backward_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (model(x) ** 2).sum().mul(100.0).backward()
    return grads(model)


def test_clip_during_backward_handle():
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    model[0].bias.requires_grad_(False)
    x = torch.randn(16, 5)
    raw = backward_grads(model, x)
    assert max(g.abs().max().item() for g in raw) > 1.0  # the bound will bite
    handle = clip.clip_during_backward(model.parameters(), 1.0)
    assert len(handle) == 3  # the frozen bias gets no hook
    clipped = backward_grads(model, x)
    for g, r in zip(clipped, raw):
        assert torch.equal(g, r.clamp(-1.0, 1.0))
    handle.remove()
    handle.remove()  # idempotent
    for g, r in zip(backward_grads(model, x), raw):
        assert torch.equal(g, r)
    with clip.clip_during_backward(model.parameters(), 0.5):
        assert all(g.abs().max() <= 0.5 for g in backward_grads(model, x))
    for g, r in zip(backward_grads(model, x), raw):
        assert torch.equal(g, r)
    with pytest.raises(ValueError, match="value"):
        clip.clip_during_backward(model.parameters(), -1.0)


# ---------------------------------------------------------------- adaptive clipping (AGC)


def naive_units(tensor: torch.Tensor) -> list[torch.Tensor]:
    t = tensor.detach().double()
    return [t] if t.dim() <= 1 else [t[i] for i in range(t.shape[0])]


def frobenius(t: torch.Tensor) -> float:
    return math.sqrt(sum(float(x) ** 2 for x in t.detach().double().flatten()))


@pytest.mark.parametrize("clip_factor", [0.01, 0.1])
def test_adaptive_clip_against_loop(clip_factor):
    model = model_with_grads(12, scale=0.05)
    with torch.no_grad():
        model[4].bias.zero_()  # a zero weight: the eps floor decides
        model[2].weight.grad.mul_(1e-3)  # a layer under the bound
    before = clone_with_grads(model)
    clip.adaptive_clip_(model.parameters(), clip_factor, eps=1e-3)
    n_clipped = n_kept = 0
    for p, old in zip(model.parameters(), before.parameters()):
        for g_new, g_old, w in zip(naive_units(p.grad), naive_units(old.grad), naive_units(p)):
            w_norm = max(frobenius(w), 1e-3)
            ratio = frobenius(g_old) / w_norm
            assert frobenius(g_new) / w_norm <= clip_factor * (1 + 1e-5)
            if ratio > clip_factor:
                n_clipped += 1
                torch.testing.assert_close(g_new, g_old * (clip_factor * w_norm / frobenius(g_old)), rtol=1e-5, atol=0)
            else:
                n_kept += 1
                assert torch.equal(g_new, g_old)  # units under the bound untouched
    assert n_clipped > 0 and n_kept > 0  # both branches exercised


def test_unitwise_ratios_and_shapes():
    conv = nn.Conv2d(3, 5, 3)
    conv.weight.grad = torch.ones_like(conv.weight)
    conv.bias.grad = torch.ones_like(conv.bias)
    ratios = clip.unitwise_ratios(conv.parameters())
    assert ratios[0].shape == (5, 1, 1, 1) and ratios[1].shape == ()
    for i in range(5):
        expected = frobenius(conv.weight.grad[i]) / max(frobenius(conv.weight[i]), 1e-3)
        assert ratios[0][i].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="clip_factor"):
        clip.adaptive_clip_(conv.parameters(), 0.0)


def test_adaptive_clip_half_precision():
    layer = nn.Linear(16, 4).to(torch.bfloat16)
    layer.weight.grad = torch.full_like(layer.weight, 100.0)
    clip.adaptive_clip_(layer.parameters(), 0.01)
    assert layer.weight.grad.dtype == torch.bfloat16
    ratio = clip.unitwise_ratios([layer.weight])[0]
    assert (ratio <= 0.01 * 1.01).all()


# ---------------------------------------------------------------- AutoClip


def grad_sequence(n: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(13)
    scales = [1.0, 3.0, 0.5, 10.0, 2.0, 0.1, 7.0, 1.5][:n]
    return [[torch.randn(4, 3, generator=g) * s, torch.randn(3, generator=g) * s] for s in scales]


def load(params: list[nn.Parameter], step_grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, step_grads):
        p.grad = g.clone()


@pytest.mark.parametrize("quantile, history", [(0.9, 1000), (0.5, 3), (1.0, 2), (0.1, 5)])
def test_quantile_clipper_against_reference(quantile, history):
    params = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(3))]
    clipper = clip.QuantileClipper(quantile, history)
    seen: list[float] = []
    for step_grads in grad_sequence(8):
        load(params, step_grads)
        norm = naive_total_norm(step_grads, 2.0)
        seen.append(norm)
        threshold = naive_percentile(seen[-history:], quantile)
        returned = clipper(params)
        assert returned.item() == pytest.approx(norm, rel=1e-5)
        assert clipper.threshold == pytest.approx(threshold, rel=1e-6)
        coefficient = min(threshold / (norm + 1e-6), 1.0)
        for p, g in zip(params, step_grads):
            torch.testing.assert_close(p.grad, g * coefficient, rtol=1e-5, atol=1e-7)
    assert clipper.norms == pytest.approx(seen[-history:], rel=1e-6)


def test_quantile_clipper_state_round_trip():
    params = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(3))]
    sequence = grad_sequence(8)
    original = clip.QuantileClipper(0.5, history=4)
    for step_grads in sequence[:6]:  # the ring buffer has wrapped
        load(params, step_grads)
        original(params)
    restored = clip.QuantileClipper(0.9, history=1)
    restored.load_state_dict(original.state_dict())
    assert (restored.quantile, restored.history, restored.norms) == (0.5, 4, original.norms)
    for step_grads in sequence[6:]:
        load(params, step_grads)
        a = original(params)
        out_a = [p.grad.clone() for p in params]
        load(params, step_grads)
        b = restored(params)
        assert torch.equal(a, b)
        assert all(torch.equal(x, p.grad) for x, p in zip(out_a, params))
        assert original.norms == restored.norms
    with pytest.raises(ValueError, match="missing keys"):
        restored.load_state_dict({"quantile": 0.5})


def test_quantile_clipper_errors_and_nonfinite():
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="quantile"):
            clip.QuantileClipper(quantile=bad)
    with pytest.raises(ValueError, match="history"):
        clip.QuantileClipper(history=0)
    params = [nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip.QuantileClipper()(params)
    skipping = clip.QuantileClipper(nonfinite="skip")
    assert skipping(params).isnan() and params[0].grad is None
    assert skipping.norms == [] and skipping.threshold is None
    assert torch.equal(skipping([]), torch.tensor(0.0))
