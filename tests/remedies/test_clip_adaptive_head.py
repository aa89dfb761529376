"""Issue 10 item 12: the ``clip_adaptive`` remedy leaves the final layer unclipped.

Brock, De, Smith & Simonyan (2021, Sec. 4.1 and their ablation) clip every layer but the
final linear classifier; the reference here is a naive unit-wise AGC over every
parameter except those of the last weight layer (registration order).
"""

import math

import pytest
import torch
from torch import nn

from graddoctor.problem import Problem
from graddoctor.remedies import get_remedy
from graddoctor.remedies.clip.adaptive import final_layer


def naive_unitwise_agc(weight: torch.Tensor, grad: torch.Tensor, factor: float, eps: float):
    """AGC unit by unit (slices along dim 0; vectors as one unit), a plain Python loop."""
    w64, g64 = weight.detach().double(), grad.detach().double()
    units = [(w64, g64)] if w64.dim() <= 1 else list(zip(w64, g64))
    out = []
    for w, g in units:
        w_norm = max(math.sqrt(sum(float(v) ** 2 for v in w.flatten())), eps)
        g_norm = math.sqrt(sum(float(v) ** 2 for v in g.flatten()))
        out.append(g * (factor * w_norm / g_norm) if g_norm / w_norm > factor else g)
    return (out[0] if w64.dim() <= 1 else torch.stack(out)).to(grad.dtype)


class ConvNet(nn.Module):
    """A conv stem and body (in a nested Sequential) and a Linear classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


CASES = {
    "mlp": (mlp, (12, 6), ("4.weight", "4.bias")),
    "conv": (ConvNet, (5, 2, 8, 8), ("head.weight", "head.bias")),
}


def problem_and_grads(name: str):
    build, shape, head = CASES[name]
    torch.manual_seed(0)
    model = build().double()
    x = torch.randn(*shape, dtype=torch.float64)
    y = 20 * torch.randn(shape[0], 3, dtype=torch.float64)  # large gradients: units get clipped
    problem = Problem(model, [(x, y)], nn.MSELoss(), lambda p: torch.optim.SGD(p, lr=0.1))
    return problem, (x, y), head


def grads_after_remedy(problem, batch, **overrides):
    applied = get_remedy("clip_adaptive").apply(problem, **overrides)
    x, y = batch
    applied.model.zero_grad(set_to_none=True)
    nn.MSELoss()(applied.model(x), y).backward()
    free = {n: p.grad.clone() for n, p in applied.model.named_parameters()}
    applied.grad_transforms[0](applied.model, None)
    return applied.model, free


@pytest.mark.parametrize("name", sorted(CASES))
def test_clip_adaptive_skips_the_final_layer(name):
    problem, batch, head = problem_and_grads(name)
    model, free = grads_after_remedy(problem, batch)
    clipped_any = False
    for param_name, param in model.named_parameters():
        if param_name in head:  # the classifier keeps its gradient
            assert torch.equal(param.grad, free[param_name]), param_name
            continue
        want = naive_unitwise_agc(param, free[param_name], 0.01, 1e-3)
        torch.testing.assert_close(param.grad, want, rtol=1e-10, atol=0)
        clipped_any |= not torch.equal(param.grad, free[param_name])
    assert clipped_any
    # the head's gradient is over AGC's bound: clipping it would have changed it
    head_weight = dict(model.named_parameters())[head[0]]
    naive_head = naive_unitwise_agc(head_weight, free[head[0]], 0.01, 1e-3)
    assert not torch.allclose(naive_head, free[head[0]])


@pytest.mark.parametrize("name", sorted(CASES))
def test_clip_adaptive_can_include_the_final_layer(name):
    problem, batch, _ = problem_and_grads(name)
    model, free = grads_after_remedy(problem, batch, include_final=True)
    for param_name, param in model.named_parameters():
        want = naive_unitwise_agc(param, free[param_name], 0.01, 1e-3)
        torch.testing.assert_close(param.grad, want, rtol=1e-10, atol=0)


def test_final_layer_is_the_last_registered_weight_layer():
    model = ConvNet()
    assert final_layer(model) is model.head
    sequential = mlp()
    assert final_layer(sequential) is sequential[4]
    frozen = mlp()
    frozen[4].requires_grad_(False)  # a frozen head: the last trainable layer is the final one
    assert final_layer(frozen) is frozen[2]
    assert final_layer(nn.Tanh()) is None
