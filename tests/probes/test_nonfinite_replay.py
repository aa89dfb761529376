"""Tests for graddoctor.probes.nonfinite_replay: where NaN/Inf is born, and that the replay leaves no trace."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from graddoctor.probes.nonfinite_replay import NonfiniteEvent, NonfiniteReport, locate_nonfinite


# ----------------------------------------------------------------------------- helpers
class SqrtLayer(nn.Module):
    """Finite forward, NaN backward for x <= 0 (0 * d sqrt(x)/dx = 0 * NaN)."""

    def forward(self, x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


class DivideByZero(nn.Module):
    """Injects NaN/Inf: x / 0 is +-inf, 0 / 0 is NaN."""

    def forward(self, x):
        return x / torch.zeros_like(x)


class Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom inside forward")


def name_of(model, target):
    (name,) = [n for n, m in model.named_modules() if m is target]
    return name


def naive_counts(tensor):
    """(NaN, Inf) counts by a plain Python loop over the values."""
    values = tensor.detach().reshape(-1).tolist()
    return sum(math.isnan(v) for v in values), sum(math.isinf(v) for v in values)


def naive_first_nonfinite(layers, x):
    """Run a plain list of layers by hand; the first whose output is non-finite, with counts."""
    for layer in layers:
        x = layer(x)
        nans, infs = naive_counts(x)
        if nans or infs:
            return layer, (nans, infs)
    return None, (0, 0)


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


def no_hooks_left(model):
    for module in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            if getattr(module, attr, {}):
                return False
    return True


def mlp(depth=6, width=8, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)])


class LSTMModel(nn.Module):
    def __init__(self, after: nn.Module):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.after = after
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(self.after(out))


class TransformerModel(nn.Module):
    def __init__(self, after: nn.Module):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.after = after
        self.head = nn.Linear(8, 1)

    def forward(self, x, src_mask=None):
        return self.head(self.after(self.encoder(x, src_mask=src_mask)))


class DictModel(nn.Module):
    def __init__(self, inject: bool):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.heads = DictHeads(inject)

    def forward(self, x):
        return self.heads(self.body(x))["logits"]


class DictHeads(nn.Module):
    def __init__(self, inject: bool):
        super().__init__()
        self.logits, self.aux = nn.Linear(4, 2), nn.Linear(4, 2)
        self.inject = inject

    def forward(self, h):
        if self.inject:  # made here, then passed on through the child `aux`
            return {"logits": self.logits(h), "aux": self.aux(h / 0.0)}
        return {"logits": self.logits(h), "aux": self.aux(h)}


# ----------------------------------------------------------------------------- forward
def test_forward_overflow_names_the_linear_not_containers_or_later_layers():
    model = mlp()
    bad = model[3][0]
    with torch.no_grad():
        model[2][0].bias.fill_(5.0)  # positive inputs to the bad layer
        bad.weight.fill_(1e38)  # 8 inputs of ~5 times 1e38 overflow float32 (max 3.4e38)
        bad.bias.zero_()
    x = torch.rand(5, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    report = locate_nonfinite(model, x, torch.zeros(5, 8), mse)
    layers = [layer for block in model for layer in block]
    expected_layer, expected_counts = naive_first_nonfinite(layers, x)
    assert expected_layer is bad
    assert isinstance(report, NonfiniteReport)
    assert (report.module, report.module_type, report.direction, report.what) == ("3.0", "Linear", "forward", "output")
    assert report.module == name_of(model, bad)
    assert (report.nan_count, report.inf_count) == expected_counts
    # later layers and the containers are events, but not the origin
    assert report.events[0].module == "3.0"
    later = {e.module for e in report.events[1:]}
    assert {"3.1", "3", "4.0", ""} <= later
    assert [e.index for e in report.events] == sorted({e.index for e in report.events})


def test_forward_exp_overflow_names_the_exp_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 4), Exp(), nn.Linear(4, 4), nn.Tanh())
    with torch.no_grad():
        model[2].weight.fill_(100.0)  # 4 inputs in (0, 1) times 100: some exp(>88.7) overflow float32
    x = torch.ones(3, 4)
    report = locate_nonfinite(model, x, torch.zeros(3, 4), mse)
    expected_layer, expected_counts = naive_first_nonfinite(list(model), x)
    assert expected_layer is model[3]
    assert (report.module, report.module_type, report.direction) == ("3", "Exp", "forward")
    assert (report.nan_count, report.inf_count) == expected_counts


def test_nan_in_input_batch_is_reported_as_input():
    model = mlp(depth=2)
    x = torch.randn(3, 8)
    x[1, 2] = float("nan")
    x[0, 0] = float("inf")
    report = locate_nonfinite(model, x, torch.zeros(3, 8), mse)
    assert (report.module, report.module_type, report.direction, report.what) == ("", "Sequential", "forward", "input")
    assert (report.nan_count, report.inf_count) == naive_counts(x)


def test_lstm_then_injected_nan_names_the_injector():
    torch.manual_seed(0)
    model = LSTMModel(DivideByZero())
    x = torch.randn(2, 5, 4)
    report = locate_nonfinite(model, x, torch.zeros(2, 5, 1), mse)
    assert (report.module, report.module_type, report.direction) == ("after", "DivideByZero", "forward")
    out, _ = model.lstm(x)
    assert (report.nan_count, report.inf_count) == naive_counts(out / torch.zeros_like(out))


def test_transformer_then_injected_nan_names_the_injector():
    torch.manual_seed(0)
    model = TransformerModel(DivideByZero())
    x = torch.randn(2, 5, 8)
    report = locate_nonfinite(model, (x,), torch.zeros(2, 5, 1), mse)
    assert (report.module, report.direction, report.what) == ("after", "forward", "output")
    assert report.module == name_of(model, model.after)


def test_dict_output_nan_names_the_module_returning_the_dict():
    torch.manual_seed(0)
    model = DictModel(inject=True)
    x = torch.randn(3, 4)
    report = locate_nonfinite(model, x, torch.zeros(3, 2), mse)
    # the NaN is made by functional code inside `heads`; its child `heads.aux` only passes it on
    assert (report.module, report.module_type, report.direction) == ("heads", "DictHeads", "forward")
    assert report.events[0].module == "heads.aux"  # completes first, but its input was already NaN
    assert (report.nan_count, report.inf_count) == naive_counts(model.heads.aux(model.body(x) / 0.0))


# ----------------------------------------------------------------------------- backward
def test_sqrt_layer_backward_nan_is_named():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6), SqrtLayer(), nn.Linear(6, 2))
    x = torch.randn(8, 6)
    outputs = model(x)
    assert torch.isfinite(outputs).all()  # the silent case: forward is finite
    report = locate_nonfinite(model, x, torch.zeros(8, 2), mse)
    assert (report.module, report.module_type, report.direction) == ("3", "SqrtLayer", "backward")
    assert report.what == "grad_input" and report.op == "SqrtBackward0"
    sqrt_input = model[2](model[1](model[0](x)))
    assert report.nan_count == sum(v <= 0 for v in sqrt_input.reshape(-1).tolist())
    assert report.inf_count == 0
    # brute-force autograd agrees that backward is non-finite
    torch.autograd.set_detect_anomaly(False)
    grads = torch.autograd.grad(mse(model(x), torch.zeros(8, 2)), list(model.parameters()))
    assert not all(torch.isfinite(g).all() for g in grads)


def test_sqrt_in_residual_branch_does_not_blame_the_sibling():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block, self.sqrt, self.head = nn.Linear(4, 4), nn.Linear(4, 4), SqrtLayer(), nn.Linear(4, 1)

        def forward(self, x):
            h = self.stem(x)
            return self.head(self.block(h) + self.sqrt(h))

    torch.manual_seed(0)
    model = Residual()
    report = locate_nonfinite(model, torch.randn(6, 4), torch.zeros(6, 1), mse)
    assert (report.module, report.direction) == ("sqrt", "backward")


def test_lstm_then_sqrt_layer_backward_is_not_blamed_on_lstm():
    torch.manual_seed(0)
    model = LSTMModel(SqrtLayer())
    report = locate_nonfinite(model, torch.randn(2, 5, 4), torch.zeros(2, 5, 1), mse)
    assert (report.module, report.direction, report.op) == ("after", "backward", "SqrtBackward0")
    assert any(e.module == "lstm" for e in report.events)  # it flows on into the LSTM


def test_backward_overflow_in_parameter_gradient_is_labelled_with_the_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    x = torch.full((4, 3), 1e30)
    with torch.no_grad():
        model[0].weight.fill_(1e-30)
        model[1].weight.fill_(1e10)
    # forward and loss are finite, d loss / d W1 = grad_out^T x = 1e10-ish * 1e30 overflows
    report = locate_nonfinite(model, x, torch.zeros(4, 1), lambda o, t: (o - t).mean())
    assert (report.module, report.direction, report.what) == ("0", "backward", "grad_weight")
    grad_w = torch.autograd.grad(model(x).mean(), model[0].weight)[0]
    assert (report.nan_count, report.inf_count) == naive_counts(grad_w)


# ----------------------------------------------------------------------------- loss and parameters
def test_loss_only_nonfinite():
    model = mlp(depth=2)
    report = locate_nonfinite(model, torch.randn(3, 8), None, lambda o, t: torch.log(o - o).mean())
    assert (report.module, report.module_type, report.direction, report.what) == ("", "<lambda>", "loss", "loss")
    assert (report.nan_count, report.inf_count) == (0, 1)


def test_targets_with_inf_are_named():
    model = mlp(depth=2)
    targets = torch.zeros(3, 8)
    targets[2, 5] = float("inf")
    report = locate_nonfinite(model, torch.randn(3, 8), targets, nn.MSELoss())
    assert (report.module_type, report.direction, report.what) == ("MSELoss", "loss", "targets")


def test_backward_nan_made_by_the_loss_function():
    model = mlp(depth=2)
    report = locate_nonfinite(model, torch.randn(3, 8), None, lambda o, t: torch.sqrt(o * 0).sum())
    assert (report.module, report.direction, report.what, report.op) == ("", "loss", "grad_input", "SqrtBackward0")


@pytest.mark.parametrize("kind", ["weight", "buffer"])
def test_parameter_or_buffer_already_nonfinite(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    if kind == "weight":
        with torch.no_grad():
            model[2].weight[1, 3] = float("nan")
            model[2].weight[0, 0] = float("-inf")
        expected = ("2", "Linear", "weight", naive_counts(model[2].weight))
    else:
        model[1].running_var[2] = float("inf")
        expected = ("1", "BatchNorm1d", "running_var", naive_counts(model[1].running_var))
    report = locate_nonfinite(model, torch.randn(5, 4), torch.zeros(5, 2), mse)
    assert report.direction == "parameter"
    assert (report.module, report.module_type, report.what, (report.nan_count, report.inf_count)) == expected


# ----------------------------------------------------------------------------- healthy models
@pytest.mark.parametrize("family", ["mlp", "lstm", "transformer_masked", "dict", "inplace_relu"])
def test_healthy_models_return_none(family):
    torch.manual_seed(0)
    if family == "mlp":
        model, inputs, targets = mlp(), torch.randn(4, 8), torch.zeros(4, 8)
    elif family == "lstm":
        model, inputs, targets = LSTMModel(nn.Tanh()), torch.randn(2, 5, 4), torch.zeros(2, 5, 1)
    elif family == "transformer_masked":
        model = TransformerModel(nn.Identity())
        mask = nn.Transformer.generate_square_subsequent_mask(5)  # float mask with -inf
        inputs, targets = {"x": torch.randn(2, 5, 8), "src_mask": mask}, torch.zeros(2, 5, 1)
    elif family == "dict":
        model, inputs, targets = DictModel(inject=False), torch.randn(3, 4), torch.zeros(3, 2)
    else:
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4), nn.ReLU(inplace=True))
        inputs, targets = torch.randn(3, 4), torch.zeros(3, 4)
    assert locate_nonfinite(model, inputs, targets, mse) is None
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- leaves no trace
@pytest.mark.parametrize("case", ["healthy", "backward_nan", "forward_nan"])
def test_model_is_unchanged_after_the_replay(case):
    torch.manual_seed(0)
    last = {"healthy": nn.Tanh(), "backward_nan": SqrtLayer(), "forward_nan": DivideByZero()}[case]
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 6), last, nn.Linear(6, 2))
    model.train()
    model[3].eval()  # a mixed mode must be kept as is
    mse(model(torch.randn(5, 4)), torch.zeros(5, 2)).backward()
    model[0].weight.grad = None  # a mix of None and existing grads
    grads_before = {name: (p.grad, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()}
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    modes_before = [m.training for m in model.modules()]
    x = torch.randn(5, 4)
    rng_before = torch.get_rng_state()

    report = locate_nonfinite(model, x, torch.zeros(5, 2), mse)

    assert (report is None) == (case == "healthy")
    assert no_hooks_left(model)
    state_after = model.state_dict()
    assert state_after.keys() == state_before.keys()
    for key, value in state_before.items():
        assert torch.equal(state_after[key], value), key
    for name, p in model.named_parameters():
        obj, value = grads_before[name]
        assert p.grad is obj
        if value is not None:
            torch.testing.assert_close(p.grad, value, rtol=0, atol=0, equal_nan=True)
    assert [m.training for m in model.modules()] == modes_before
    assert torch.equal(torch.get_rng_state(), rng_before)
    pickle.loads(pickle.dumps(model))


def test_exception_in_forward_propagates_and_hooks_are_removed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Raises()))
    with pytest.raises(RuntimeError, match="boom inside forward"):
        locate_nonfinite(model, torch.randn(2, 3), None, mse)
    assert no_hooks_left(model)
    pickle.dumps(model)


# ----------------------------------------------------------------------------- API
def test_max_events_caps_the_list_but_keeps_the_origin():
    model = mlp()
    with torch.no_grad():
        model[0][0].bias.fill_(5.0)
        model[1][0].weight.fill_(1e38)
    x = torch.rand(4, 8) + 0.5
    full = locate_nonfinite(model, x, torch.zeros(4, 8), mse)
    capped = locate_nonfinite(model, x, torch.zeros(4, 8), mse, max_events=2)
    assert len(full.events) > 2 and capped.events == full.events[:2]
    assert (capped.module, capped.direction) == (full.module, full.direction) == ("1.0", "forward")


def test_to_dict_round_trips_the_fields():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), DivideByZero())
    report = locate_nonfinite(model, torch.ones(1, 2), torch.zeros(1, 2), mse)
    data = report.to_dict()
    assert data["module"] == "1" and data["direction"] == "forward"
    assert isinstance(data["events"], list) and data["events"][0] == report.events[0].to_dict()
    assert NonfiniteEvent(**data["events"][0]) == report.events[0]


def test_bad_arguments_raise_clear_errors():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor, got shape \\(4, 2\\)"):
        locate_nonfinite(model, x, None, lambda o, t: o)
    assert no_hooks_left(model)
    with pytest.raises(TypeError, match="loss_fn must return a tensor"):
        locate_nonfinite(model, x, None, lambda o, t: 1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        locate_nonfinite(lambda x: x, x, None, mse)
    with pytest.raises(TypeError, match="callable"):
        locate_nonfinite(model, x, None, "mse")
    with pytest.raises(ValueError, match="max_events"):
        locate_nonfinite(model, x, None, mse, max_events=0)
