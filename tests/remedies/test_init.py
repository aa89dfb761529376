"""Tests for graddoctor.remedies.init: statistics against closed forms, equality with torch.nn.init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor.remedies import init

from ..conftest import generator

# ---------------------------------------------------------------- references written apart


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def truncated_moments(a: float = 2.0) -> tuple[float, float]:
    """E[x^2], E[x^4] of a standard normal truncated to [-a, a] (integration by parts)."""
    z = 2.0 * normal_cdf(a) - 1.0
    m2 = 1.0 - 2.0 * a * normal_pdf(a) / z
    m4 = 3.0 * m2 - 2.0 * a**3 * normal_pdf(a) / z
    return m2, m4


def kurtosis(distribution: str) -> float:
    if distribution == "normal":
        return 3.0
    if distribution == "uniform":
        return 9.0 / 5.0
    m2, m4 = truncated_moments()
    return m4 / m2**2


def reference_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = 1
    for size in shape[2:]:
        receptive *= size
    return shape[1] * receptive, shape[0] * receptive


def assert_variance(sample: torch.Tensor, variance: float, distribution: str, n_se: float = 5.0) -> None:
    """Sample mean and variance within n_se standard errors of (0, variance)."""
    x = sample.detach().double().flatten()
    n = x.numel()
    mean_se = math.sqrt(variance / n)
    var_se = variance * math.sqrt((kurtosis(distribution) - 1.0) / n)
    assert abs(x.mean().item()) < n_se * mean_se
    assert abs(x.var(correction=0).item() - variance) < n_se * var_se, (x.var().item(), variance)


# ---------------------------------------------------------------- variance_scaling_

SHAPE = (400, 250, 3, 3)  # fan_in 2250, fan_out 3600: all three modes differ


@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_statistics(mode, distribution):
    fan_in, fan_out = reference_fans(SHAPE)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    w = torch.empty(SHAPE)
    init.variance_scaling_(w, scale=3.0, mode=mode, distribution=distribution, generator=generator(1))
    assert_variance(w, 3.0 / n, distribution)


def test_fans_match_torch_convention():
    assert init.fan_in_and_fan_out(torch.empty(SHAPE)) == (2250, 3600)
    assert init.fan_in_and_fan_out(nn.Linear(7, 5).weight) == (7, 5)
    assert init.fan_in_and_fan_out(nn.Conv1d(4, 6, 5).weight) == (20, 30)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fan_in_and_fan_out(torch.empty(5))


def test_uniform_bounds():
    w = torch.empty(1000, 1000)
    init.variance_scaling_(w, 2.0, "fan_in", "uniform", generator=generator(2))
    limit = math.sqrt(3 * 2.0 / 1000)
    assert w.abs().max().item() <= limit
    assert w.abs().max().item() > 0.999 * limit  # reaches the bound: not a narrower law


def test_keras_truncation_constant():
    m2, _ = truncated_moments()
    assert init.TRUNCATED_NORMAL_STD == pytest.approx(math.sqrt(m2), abs=1e-15)


def test_truncated_normal_bounds_and_shape():
    w = torch.empty(1000, 1000)
    variance = 1.0 / 1000
    init.variance_scaling_(w, 1.0, "fan_in", "truncated_normal", generator=generator(3))
    s = math.sqrt(variance) / 0.87962566103423978  # std before truncation
    assert w.abs().max().item() <= 2 * s * (1 + 1e-6)
    assert w.abs().max().item() > 1.99 * s
    # fraction inside one untruncated std: P(|z|<1) / P(|z|<2) for a truncated normal
    expected = (2 * normal_cdf(1) - 1) / (2 * normal_cdf(2) - 1)
    inside = (w.abs() < s).double().mean().item()
    assert abs(inside - expected) < 5 * math.sqrt(expected * (1 - expected) / w.numel())


def test_seed_000_he_avg_uniform():
    # keras.initializers.VarianceScaling(scale=2., mode='fan_avg', distribution='uniform')
    # on Dense(20) after 100 inputs: sigma^2 = 2 / fan_avg, r = sqrt(3 sigma^2)
    w = nn.Linear(100, 20).weight
    init.variance_scaling_(w, scale=2.0, mode="fan_avg", distribution="uniform", generator=generator(4))
    r = math.sqrt(3 * 2.0 / 60)
    assert w.abs().max().item() <= r
    big = torch.empty(1000, 3000)
    init.variance_scaling_(big, scale=2.0, mode="fan_avg", distribution="uniform", generator=generator(4))
    assert_variance(big, 2.0 / 2000, "uniform")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_dtype_kept(dtype, distribution):
    w = torch.empty(300, 200, dtype=dtype)
    init.variance_scaling_(w, 1.0, "fan_in", distribution, generator=generator(5))
    assert w.dtype == dtype
    assert torch.isfinite(w).all()
    assert_variance(w.double(), 1.0 / 200, distribution, n_se=8.0)


def test_bad_arguments():
    w = torch.empty(4, 4)
    with pytest.raises(ValueError, match="mode"):
        init.variance_scaling_(w, mode="fan_sum")
    with pytest.raises(ValueError, match="distribution"):
        init.variance_scaling_(w, distribution="cauchy")
    with pytest.raises(ValueError, match="scale"):
        init.variance_scaling_(w, scale=0.0)
    with pytest.raises(TypeError, match="floating-point"):
        init.variance_scaling_(torch.empty(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.he_normal_(torch.empty(4))


# ---------------------------------------------------------------- named schemes vs torch.nn.init

SCHEME_CASES = [
    (lambda w, g: init.he_normal_(w, generator=g), lambda w, g: nn.init.kaiming_normal_(w, generator=g)),
    (lambda w, g: init.he_normal_(w, 0.2, generator=g), lambda w, g: nn.init.kaiming_normal_(w, a=0.2, generator=g)),
    (lambda w, g: init.he_uniform_(w, 0.1, generator=g), lambda w, g: nn.init.kaiming_uniform_(w, a=0.1, generator=g)),
    (lambda w, g: init.glorot_normal_(w, generator=g), lambda w, g: nn.init.xavier_normal_(w, generator=g)),
    (lambda w, g: init.glorot_uniform_(w, 1.5, generator=g), lambda w, g: nn.init.xavier_uniform_(w, 1.5, generator=g)),
    (
        lambda w, g: init.lecun_normal_(w, generator=g),
        lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="linear", generator=g),
    ),
    (
        lambda w, g: init.lecun_uniform_(w, generator=g),
        lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="linear", generator=g),
    ),
    (lambda w, g: init.orthogonal_(w, 2.0, generator=g), lambda w, g: nn.init.orthogonal_(w, 2.0, generator=g)),
]


@pytest.mark.parametrize("shape", [(64, 48), (32, 8, 3, 3)])
@pytest.mark.parametrize("ours, theirs", SCHEME_CASES)
def test_named_schemes_equal_torch(ours, theirs, shape):
    a, b = torch.empty(shape), torch.empty(shape)
    ours(a, generator(7))
    theirs(b, generator(7))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize(
    "scheme, variance, distribution",
    [
        (lambda w, g: init.he_normal_(w, 0.2, generator=g), 2 / (1.04 * 500), "normal"),
        (lambda w, g: init.he_uniform_(w, generator=g), 2 / 500, "uniform"),
        (lambda w, g: init.glorot_normal_(w, generator=g), 1 / 750, "normal"),
        (lambda w, g: init.glorot_uniform_(w, generator=g), 1 / 750, "uniform"),
        (lambda w, g: init.lecun_normal_(w, generator=g), 1 / 500, "normal"),
        (lambda w, g: init.lecun_uniform_(w, generator=g), 1 / 500, "uniform"),
    ],
)
def test_named_scheme_variances(scheme, variance, distribution):
    w = torch.empty(1000, 500)  # fan_in 500, fan_out 1000, fan_avg 750
    scheme(w, generator(8))
    assert_variance(w, variance, distribution)


# ---------------------------------------------------------------- orthogonal_ and identity_


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (64, 16, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_rows_or_columns(shape, gain):
    w = torch.empty(shape, dtype=torch.float64)
    init.orthogonal_(w, gain, generator=generator(9))
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-10, rtol=0)


def test_orthogonal_is_haar_sign_symmetric():
    # without the sign(diag R) correction Householder QR makes Q[0, 0] always negative
    g = generator(10)
    w = torch.empty(4, 4)
    positive = 0
    draws = 200
    for _ in range(draws):
        init.orthogonal_(w, generator=g)
        positive += int(w[0, 0] > 0)
    assert abs(positive / draws - 0.5) < 5 * math.sqrt(0.25 / draws)


def test_orthogonal_half_precision():
    w = torch.empty(32, 32, dtype=torch.bfloat16)
    init.orthogonal_(w, generator=generator(11))
    assert w.dtype == torch.bfloat16
    gram = w.double() @ w.double().T
    torch.testing.assert_close(gram, torch.eye(32, dtype=torch.float64), atol=0.05, rtol=0)


def test_identity():
    w = torch.randn(5, 5)
    init.identity_(w, gain=0.5)
    assert torch.equal(w, 0.5 * torch.eye(5))
    with pytest.raises(ValueError, match="square 2-D"):
        init.identity_(torch.empty(12, 3))
    lstm = nn.LSTM(3, 3)
    for block in lstm.weight_hh_l0.chunk(4):  # the documented gate-block recipe writes through
        init.identity_(block)
    assert torch.equal(lstm.weight_hh_l0.detach(), torch.eye(3).repeat(4, 1))


# ---------------------------------------------------------------- lsuv_


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.Tanh(), nn.Linear(64, 3)
    )


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5)
    )


def measured_output_variances(model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
    variances: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            def hook(m, i, out, name=name):
                variances[name] = out.double().var(correction=0).item()
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return variances


@pytest.mark.parametrize("make, batch_shape", [(mlp, (256, 20)), (cnn, (64, 3, 8, 8))])
def test_lsuv_unit_variance(make, batch_shape):
    model = make()
    batch = torch.randn(batch_shape, generator=generator(12)) * 5.0
    buffers_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    report = init.lsuv_(model, batch, tol=0.05, generator=generator(13))
    for key, value in buffers_before.items():  # BatchNorm statistics restored
        assert torch.equal(model.state_dict()[key], value)
    independent = measured_output_variances(model, batch)
    assert list(report) == list(independent)  # forward order, every layer
    for name, layer in report.items():
        assert layer.converged and layer.iterations >= 1
        assert abs(layer.variance - 1) < 0.05
        assert abs(independent[name] - 1) < 0.05
    for module in model.modules():
        assert not module._forward_hooks
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            assert not module.bias.any()


def test_lsuv_prescales_orthonormal_weights():
    model = mlp()
    init.lsuv_(model, torch.randn(256, 20, generator=generator(14)), generator=generator(15))
    w = model[2].weight.detach().double()
    gram = w @ w.T
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=1e-5)


def test_lsuv_under_no_grad_and_hooks_removed_on_error():
    model = mlp()
    with torch.no_grad():
        report = init.lsuv_(model, torch.randn(128, 20, generator=generator(16)), max_iter=3)
    assert len(report) == 3

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("boom")

    broken = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        init.lsuv_(broken, torch.randn(8, 4))
    assert not broken.fc._forward_hooks
    with pytest.raises(ValueError, match="no Linear or ConvNd"):
        init.lsuv_(nn.Sequential(nn.ReLU()), torch.randn(2, 2))
    with pytest.raises(ValueError, match="tol"):
        init.lsuv_(mlp(), torch.randn(2, 20), tol=0)


# ---------------------------------------------------------------- init_model_


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.tanh_block = nn.Sequential(nn.Linear(256, 256), nn.Tanh())
        self.relu_block = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512), nn.ReLU())
        self.leaky = nn.ModuleList([nn.Linear(512, 256), nn.LeakyReLU(0.2)])
        self.selu = nn.Sequential(nn.Linear(256, 256), nn.SELU())
        self.prelu = nn.Sequential(nn.Linear(256, 256), nn.Dropout(0.1), nn.PReLU(init=0.5))
        self.lstm = nn.LSTM(256, 128)
        self.head = nn.Linear(128, 200)


def test_init_model_picks_scheme_per_layer():
    model = Mixed()
    with torch.no_grad():
        model.relu_block[1].weight.fill_(0.5)  # BatchNorm must stay untouched
    choices = init.init_model_(model, generator=generator(17))
    table = {(c.layer, c.parameter): c for c in choices}
    expected = {
        ("tanh_block.0", "weight"): ("glorot_uniform", "Tanh", 1.0),
        ("relu_block.0", "weight"): ("he_normal", "ReLU", math.sqrt(2)),
        ("leaky.0", "weight"): ("he_normal", "LeakyReLU", math.sqrt(2 / (1 + 0.04))),
        ("selu.0", "weight"): ("lecun_normal", "SELU", 1.0),
        ("prelu.0", "weight"): ("he_normal", "PReLU", math.sqrt(2 / 1.25)),
        ("lstm", "weight_ih_l0"): ("glorot_uniform", "LSTM", 1.0),
        ("lstm", "weight_hh_l0"): ("orthogonal", "LSTM", 1.0),
        ("head", "weight"): ("glorot_uniform", None, 1.0),
    }
    assert set(table) == set(expected)
    for key, (scheme, activation, gain) in expected.items():
        assert (table[key].scheme, table[key].activation) == (scheme, activation), key
        assert table[key].gain == pytest.approx(gain, rel=1e-12)
    assert table[("leaky.0", "weight")].negative_slope == 0.2
    # the weights follow the formulas: sigma^2 = gain^2 / fan (fan_avg for Glorot)
    assert_variance(model.tanh_block[0].weight, 1 / 256, "uniform")
    assert_variance(model.relu_block[0].weight, 2 / 256, "normal")
    assert_variance(model.leaky[0].weight, 2 / (1.04 * 512), "normal")
    assert_variance(model.selu[0].weight, 1 / 256, "normal")
    assert_variance(model.prelu[0].weight, 2 / (1.25 * 256), "normal")
    assert_variance(model.head.weight, 1 / 164, "uniform")
    assert model.lstm.weight_ih_l0.abs().max() <= math.sqrt(6 / (256 + 512))
    for block in model.lstm.weight_hh_l0.detach().double().chunk(4):
        torch.testing.assert_close(block @ block.T, torch.eye(128, dtype=torch.float64), atol=1e-5, rtol=0)
    for name, parameter in model.named_parameters():
        if "bias" in name and "relu_block.1" not in name:
            assert not parameter.any(), name
    assert torch.equal(model.relu_block[1].weight.detach(), torch.full((512,), 0.5))


def test_init_model_skips_norm_and_dropout_between_layer_and_activation():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Dropout(), nn.ReLU6(), nn.Linear(8, 8), nn.Linear(8, 2))
    choices = init.init_model_(model)
    assert [(c.layer, c.scheme, c.activation) for c in choices] == [
        ("0", "he_normal", "ReLU6"),  # ReLU6 subclasses Hardtanh: still a rectifier
        ("4", "glorot_uniform", None),  # a Linear straight after a Linear has no activation
        ("5", "glorot_uniform", None),
    ]


@pytest.mark.parametrize("scheme", ["he", "glorot", "lecun", "orthogonal"])
def test_init_model_explicit_scheme(scheme):
    model = nn.Sequential(nn.Linear(300, 300), nn.Tanh(), nn.Linear(300, 300), nn.LeakyReLU(0.3))
    choices = init.init_model_(model, scheme=scheme, generator=generator(18))
    assert all(c.scheme.startswith(scheme) for c in choices)
    for layer, choice in zip((model[0], model[2]), choices):
        w = layer.weight.detach().double()
        if scheme == "orthogonal":
            torch.testing.assert_close(w @ w.T, torch.eye(300, dtype=torch.float64), atol=1e-5, rtol=0)
        else:
            variance = {"he": 2 / (1 + choice.negative_slope**2) / 300, "glorot": 1 / 300, "lecun": 1 / 300}[scheme]
            distribution = "uniform" if scheme == "glorot" else "normal"
            assert_variance(w, variance, distribution)
    if scheme == "he":
        assert [c.negative_slope for c in choices] == [0.0, 0.3]


def test_init_model_keeps_dtype_and_is_reproducible():
    model = nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.GRU(400, 50)).double()
    init.init_model_(model, generator=generator(19))
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert_variance(model[0].weight, 2 / 400, "normal")
    again = nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.GRU(400, 50)).double()
    init.init_model_(again, generator=generator(19))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_init_model_errors():
    with pytest.raises(ValueError, match="scheme"):
        init.init_model_(nn.Linear(2, 2), scheme="xavier")
    with pytest.raises(ValueError, match="forward pass"):
        init.init_model_(nn.Sequential(nn.LazyLinear(3)))
    with pytest.raises(TypeError, match="nn.Module"):
        init.init_model_(torch.empty(3, 3))
