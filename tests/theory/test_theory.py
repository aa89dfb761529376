"""Tests for graddoctor.theory: every closed form is compared with autograd or a naive loop."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from graddoctor import theory

# ---------------------------------------------------------------- naive references


def naive_chain_activations(x, w, b, n):
    """a_i = w a_{i-1} + b by a plain Python loop."""
    values, a = [], x
    for _ in range(n):
        a = w * a + b
        values.append(a)
    return np.array(values)


def chain_by_autograd(model, x):
    """Activations, d a_n / d w_i, d a_n / d b_i and d a_n / d a_i of the built chain."""
    inputs = torch.tensor([[x]], dtype=torch.float64)
    activations = []
    a = inputs
    for layer in model:
        a = layer(a)
        activations.append(a)
    weights = [layer.weight for layer in model]
    biases = [layer.bias for layer in model]
    grads = torch.autograd.grad(activations[-1].sum(), weights + biases + activations)
    n = len(model)
    as_array = lambda tensors: np.array([t.item() for t in tensors])  # noqa: E731
    return (
        as_array(activations),
        as_array(grads[:n]),
        as_array(grads[n : 2 * n]),
        as_array(grads[2 * n :]),
    )


def explicit_jacobian(function, point):
    """Jacobian d function(point) / d point, one backward pass per output coordinate."""
    point = point.detach().clone().requires_grad_(True)
    output = function(point).reshape(-1)
    rows = [
        torch.autograd.grad(output[j], point, retain_graph=True)[0].reshape(-1)
        for j in range(output.numel())
    ]
    return torch.stack(rows)


def random_matrix(size, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(size, size, generator=generator, dtype=torch.float64) * scale / math.sqrt(size)
    )


# ---------------------------------------------------------------- deep linear scalar chain


@pytest.mark.parametrize("w", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("n", [10, 30])
@pytest.mark.parametrize("b", [0.0, 0.3])
def test_linear_chain_closed_forms_match_autograd(w, n, b):
    x = 0.7
    model = theory.build_linear_chain(n, w, b)
    activations, weight_grads, bias_grads, input_grads = chain_by_autograd(model, x)
    np.testing.assert_allclose(theory.linear_chain_activations(x, w, b, n), activations, rtol=1e-12)
    np.testing.assert_allclose(
        theory.linear_chain_weight_gradients(x, w, b, n), weight_grads, rtol=1e-12
    )
    np.testing.assert_allclose(theory.linear_chain_input_gradients(w, n), input_grads, rtol=1e-12)
    np.testing.assert_allclose(theory.linear_chain_input_gradients(w, n), bias_grads, rtol=1e-12)


@pytest.mark.parametrize("w", [-1.3, -0.4, 0.0, 0.2, 0.97, 1.0, 1.03, 2.5])
def test_linear_chain_activations_match_loop(w):
    np.testing.assert_allclose(
        theory.linear_chain_activations(-1.2, w, 0.45, 25),
        naive_chain_activations(-1.2, w, 0.45, 25),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("delta", [1e-9, -1e-9, 1e-13, 3e-6])
def test_linear_chain_is_stable_near_w_equal_one(delta):
    w, b, n = 1.0 + delta, 0.3, 40
    exact_w, exact_b = Fraction(w), Fraction(b)
    exact, a = [], Fraction(0)
    for _ in range(n):
        a = exact_w * a + exact_b
        exact.append(float(a))
    np.testing.assert_allclose(theory.linear_chain_activations(0.0, w, b, n), exact, rtol=1e-13)


def test_linear_chain_regimes_from_seed():
    n = 60
    assert theory.linear_chain_activations(2.0, 1.0, 0.5, n)[-1] == pytest.approx(2.0 + n * 0.5)
    # w < 1: a_n -> b / (1 - w), gradients of early layers vanish.
    assert theory.linear_chain_activations(2.0, 0.5, 0.5, n)[-1] == pytest.approx(1.0)
    assert theory.linear_chain_weight_gradients(2.0, 0.5, 0.5, n)[0] < 1e-15
    # w > 1: they explode.
    assert theory.linear_chain_weight_gradients(2.0, 1.5, 0.5, n)[0] > 1e9


def test_build_linear_chain_layout_and_global_rng():
    state = torch.get_rng_state()
    model = theory.build_linear_chain(3, 0.8, -0.1, dtype=torch.float32)
    assert torch.equal(state, torch.get_rng_state())
    assert [name for name, _ in model.named_children()] == ["layer_1", "layer_2", "layer_3"]
    for layer in model:
        assert isinstance(layer, nn.Linear) and layer.weight.dtype == torch.float32
        assert layer.weight.item() == pytest.approx(0.8) and layer.bias.item() == pytest.approx(
            -0.1
        )


def test_linear_chain_rejects_bad_input():
    with pytest.raises(ValueError, match="n"):
        theory.linear_chain_activations(1.0, 0.5, 0.0, 0)
    with pytest.raises(TypeError, match="n"):
        theory.linear_chain_input_gradients(0.5, 2.5)
    with pytest.raises(ValueError, match="w must be finite"):
        theory.linear_chain_weight_gradients(1.0, float("nan"), 0.0, 3)
    with pytest.raises(TypeError, match="x must be a real number"):
        theory.linear_chain_activations("1", 0.5, 0.0, 3)
    with pytest.raises(TypeError, match="dtype"):
        theory.build_linear_chain(3, 0.5, 0.0, dtype=torch.int64)


# ---------------------------------------------------------------- recurrent Jacobian bound


@pytest.mark.parametrize(
    ("activation", "function"),
    [
        ("tanh", torch.tanh),
        ("sigmoid", torch.sigmoid),
        ("relu", torch.relu),
        ("linear", lambda z: z),
    ],
)
def test_activation_derivative_bound_is_sup_of_autograd_derivative(activation, function):
    grid = torch.linspace(-6, 6, 2401, dtype=torch.float64, requires_grad=True)
    (derivative,) = torch.autograd.grad(function(grid).sum(), grid)
    assert derivative.abs().max().item() == pytest.approx(
        theory.activation_derivative_bound(activation), rel=1e-9
    )


def test_jacobian_bound_values_and_errors():
    assert theory.jacobian_bound(2.0, 3, "sigmoid") == pytest.approx(0.125)
    assert theory.jacobian_bound(0.9, 0) == 1.0
    np.testing.assert_allclose(
        theory.jacobian_bound(1.1, [1, 2, 5], "relu"), 1.1 ** np.array([1, 2, 5])
    )
    with pytest.raises(ValueError, match="activation"):
        theory.jacobian_bound(1.0, 2, "gelu")
    with pytest.raises(ValueError, match="t_minus_k"):
        theory.jacobian_bound(1.0, -1)
    with pytest.raises(TypeError, match="t_minus_k"):
        theory.jacobian_bound(1.0, 2.5)
    with pytest.raises(ValueError, match="gamma_w"):
        theory.jacobian_bound(-1.0, 2)


def unroll(function, recurrent, drive, hidden, steps):
    """h_i = f(U h_{i-1} + drive_i) for i = 1..steps; returns every h_i."""
    states = []
    for i in range(steps):
        hidden = function(recurrent @ hidden + drive[i])
        states.append(hidden)
    return states


@pytest.mark.parametrize(
    ("activation", "function", "derivative", "scale"),
    [
        ("tanh", torch.tanh, lambda h: 1 - h**2, 0.6),
        ("tanh", torch.tanh, lambda h: 1 - h**2, 1.8),
        ("sigmoid", torch.sigmoid, lambda h: h * (1 - h), 3.0),
    ],
)
def test_recurrent_jacobian_norm_is_below_bound(activation, function, derivative, scale):
    size, seed = 12, 5
    recurrent = random_matrix(size, scale, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    drive = torch.randn(20, size, generator=generator, dtype=torch.float64)
    h_k = torch.randn(size, generator=generator, dtype=torch.float64)
    gamma_w = theory.largest_singular_value(recurrent)
    for t_minus_k in (1, 3, 7, 15):
        autograd_jacobian = explicit_jacobian(
            lambda h, steps=t_minus_k: unroll(function, recurrent, drive, h, steps)[-1], h_k
        )
        # Naive reference: the product of per-step Jacobians diag(f'(z_i)) U (eq. 9).
        product = torch.eye(size, dtype=torch.float64)
        for h_i in unroll(function, recurrent, drive, h_k, t_minus_k):
            product = torch.diag(derivative(h_i)) @ recurrent @ product
        torch.testing.assert_close(autograd_jacobian, product, rtol=1e-10, atol=1e-14)
        norm = torch.linalg.matrix_norm(autograd_jacobian, ord=2).item()
        assert norm <= theory.jacobian_bound(gamma_w, t_minus_k, activation) * (1 + 1e-10)


def test_jacobian_bound_is_tight_for_scaled_orthogonal_linear_recurrence():
    size, scale = 10, 1.07
    q, _ = torch.linalg.qr(random_matrix(size, 1.0, 3))
    recurrent = scale * q
    gamma_w = theory.largest_singular_value(recurrent)
    assert gamma_w == pytest.approx(scale, rel=1e-12)
    h_k = torch.ones(size, dtype=torch.float64)
    drive = torch.zeros(9, size, dtype=torch.float64)
    jacobian = explicit_jacobian(lambda h: unroll(lambda z: z, recurrent, drive, h, 9)[-1], h_k)
    assert torch.linalg.matrix_norm(jacobian, ord=2).item() == pytest.approx(
        theory.jacobian_bound(gamma_w, 9, "linear"), rel=1e-10
    )


def test_bound_holds_for_torch_rnn_through_recurrent_spectra():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 8, nonlinearity="tanh", batch_first=True).double()
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(4.0)
    (entry,) = theory.recurrent_spectra(rnn)
    assert entry["name"] == "weight_hh_l0" and entry["gate"] is None
    sequence = torch.randn(1, 10, 3, dtype=torch.float64)
    h0 = torch.randn(1, 1, 8, dtype=torch.float64)
    for steps in (1, 4, 10):
        jacobian = explicit_jacobian(lambda h, steps=steps: rnn(sequence, h)[0][0, steps - 1], h0)
        norm = torch.linalg.matrix_norm(jacobian, ord=2).item()
        bound = theory.jacobian_bound(entry["largest_singular_value"], steps, "tanh")
        assert norm <= bound * (1 + 1e-10)


# ---------------------------------------------------------------- spectra


def test_largest_singular_value_and_spectral_radius_match_numpy():
    matrix = random_matrix(9, 1.3, 11)
    array = matrix.numpy()
    assert theory.largest_singular_value(matrix) == pytest.approx(
        math.sqrt(np.linalg.eigvalsh(array.T @ array).max()), rel=1e-10
    )
    assert theory.spectral_radius(matrix) == pytest.approx(
        np.abs(np.linalg.eigvals(array)).max(), rel=1e-10
    )
    rotation = torch.tensor([[0.0, -2.0], [2.0, 0.0]])  # complex eigenvalues +-2i
    assert theory.spectral_radius(rotation) == pytest.approx(2.0, rel=1e-6)
    assert theory.largest_singular_value(torch.ones(2, 3, dtype=torch.float16)) == pytest.approx(
        math.sqrt(6), rel=1e-3
    )
    with pytest.raises(ValueError, match="square"):
        theory.spectral_radius(torch.ones(2, 3))
    with pytest.raises(ValueError, match="2-D"):
        theory.largest_singular_value(torch.ones(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        theory.spectral_radius(np.eye(2))


def naive_gate_entries(weight, gates, name):
    hidden = weight.shape[0] // len(gates)
    entries = []
    for index, gate in enumerate(gates):
        block = weight.detach()[index * hidden : (index + 1) * hidden].numpy()
        entries.append(
            (name, gate, np.linalg.norm(block, 2), np.abs(np.linalg.eigvals(block)).max())
        )
    return entries


def as_tuples(entries):
    return [
        (e["name"], e["gate"], e["largest_singular_value"], e["spectral_radius"]) for e in entries
    ]


@pytest.mark.parametrize(
    ("rnn_class", "gates"), [(nn.LSTM, ("i", "f", "g", "o")), (nn.GRU, ("r", "z", "n"))]
)
def test_recurrent_spectra_splits_gate_blocks(rnn_class, gates):
    torch.manual_seed(1)
    rnn = rnn_class(4, 6, num_layers=2, bidirectional=True).double()
    before = {key: value.clone() for key, value in rnn.state_dict().items()}
    entries = theory.recurrent_spectra(nn.Sequential(rnn))
    expected = []
    for layer in range(2):
        for suffix in ("", "_reverse"):
            name = f"weight_hh_l{layer}{suffix}"
            expected += naive_gate_entries(getattr(rnn, name), gates, f"0.{name}")
    assert len(entries) == 2 * 2 * len(gates)
    assert all(entry["shape"] == (6, 6) for entry in entries)
    for got, want in zip(as_tuples(entries), expected):
        assert got[:2] == want[:2]
        np.testing.assert_allclose(got[2:], want[2:], rtol=1e-10)
    assert all(torch.equal(before[key], value) for key, value in rnn.state_dict().items())


def test_recurrent_spectra_on_lstm_finds_four_gates_per_layer():
    entries = theory.recurrent_spectra(nn.LSTM(3, 5, num_layers=3))
    assert len(entries) == 12
    for layer in range(3):
        layer_entries = [e for e in entries if e["name"] == f"weight_hh_l{layer}"]
        assert [e["gate"] for e in layer_entries] == ["i", "f", "g", "o"]


class DiagonalRecurrence(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight_hh = nn.Parameter(torch.tensor([0.5, -1.5, 1.2], dtype=torch.float64))


class SquareRecurrence(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight_hh = nn.Parameter(torch.tensor([[0.0, 2.0], [0.5, 0.0]], dtype=torch.float64))


def test_recurrent_spectra_cells_custom_modules_and_projections():
    torch.manual_seed(2)
    model = nn.ModuleDict(
        {
            "cell": nn.LSTMCell(3, 4),
            "gru_cell": nn.GRUCell(3, 4),
            "rnn_cell": nn.RNNCell(3, 4),
            "diagonal": DiagonalRecurrence(),
            "square": SquareRecurrence(),
            "projected": nn.LSTM(3, 6, proj_size=2),
            "linear": nn.Linear(3, 3),
        }
    )
    entries = theory.recurrent_spectra(model)
    names = [(e["name"], e["gate"]) for e in entries]
    assert names[:4] == [("cell.weight_hh", g) for g in "ifgo"]
    assert names[4:7] == [("gru_cell.weight_hh", g) for g in "rzn"]
    assert names[7] == ("rnn_cell.weight_hh", None)
    diagonal, square = entries[8], entries[9]
    assert diagonal["shape"] == (3, 3) and diagonal["largest_singular_value"] == pytest.approx(1.5)
    assert diagonal["spectral_radius"] == pytest.approx(1.5)
    assert square["largest_singular_value"] == pytest.approx(2.0)
    assert square["spectral_radius"] == pytest.approx(1.0)  # eigenvalues +-sqrt(0.5 * 2)
    projected = entries[10:]
    assert [e["gate"] for e in projected] == list("ifgo")
    assert all(e["shape"] == (6, 2) and e["spectral_radius"] is None for e in projected)
    assert theory.recurrent_spectra(nn.Linear(2, 2)) == []
    with pytest.raises(TypeError, match="nn.Module"):
        theory.recurrent_spectra(torch.eye(2))


# ---------------------------------------------------------------- input-output Jacobian spectrum


def naive_singular_values(model, inputs):
    rows = []
    for sample in inputs:
        jacobian = explicit_jacobian(lambda x: model(x.unsqueeze(0)).squeeze(0), sample)
        rows.append(torch.linalg.svdvals(jacobian).numpy())
    return np.stack(rows)


class BranchingModel(nn.Module):
    """Data-dependent control flow: vmap refuses it, autograd handles it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3).double()

    def forward(self, x):
        if x.sum() > 0:
            return torch.tanh(self.linear(x))
        return self.linear(x) ** 2


@pytest.mark.parametrize(("in_features", "out_features"), [(5, 3), (3, 5)])
def test_jacobian_singular_values_match_explicit_jacobian(in_features, out_features):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(in_features, 7), nn.Tanh(), nn.Linear(7, out_features)).double()
    inputs = torch.randn(4, in_features, dtype=torch.float64)
    got = theory.jacobian_singular_values(model, inputs)
    assert got.shape == (4, min(in_features, out_features)) and got.dtype == np.float64
    np.testing.assert_allclose(got, naive_singular_values(model, inputs), rtol=1e-10, atol=1e-14)


def test_jacobian_singular_values_falls_back_without_vmap():
    torch.manual_seed(4)
    model = BranchingModel()
    inputs = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        torch.func.vmap(model)(inputs.unsqueeze(1))
    got = theory.jacobian_singular_values(model, inputs)
    np.testing.assert_allclose(got, naive_singular_values(model, inputs), rtol=1e-10, atol=1e-14)


def test_jacobian_singular_values_rejects_bad_input():
    model = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="batch"):
        theory.jacobian_singular_values(model, torch.ones(3))
    with pytest.raises(TypeError, match="floating point"):
        theory.jacobian_singular_values(model, torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="nn.Module"):
        theory.jacobian_singular_values(lambda x: x, torch.ones(2, 3))


@pytest.mark.parametrize("gain", [1.0, 1.02])
def test_deep_linear_orthogonal_network_is_exactly_isometric(gain):
    depth = 24
    result = theory.isometry_experiment(depth, 32, "orthogonal", "linear", gain=gain, batch=3)
    assert result["singular_values"].shape == (3, 32)
    np.testing.assert_allclose(result["singular_values"], gain**depth, rtol=1e-12)
    model = theory.build_isometry_mlp(3, 16, "orthogonal", "linear", gain=gain)
    for layer in model:
        gram = layer.weight.T @ layer.weight
        torch.testing.assert_close(gram, gain**2 * torch.eye(16, dtype=torch.float64))


def test_orthogonal_init_is_sign_corrected():
    # Haar-distributed Q has E[Q_jj] = 0; raw Householder QR gives a biased diagonal.
    model = theory.build_isometry_mlp(200, 4, "orthogonal", "linear", seed=0)
    diagonals = torch.stack([layer.weight.diagonal() for layer in model])
    assert abs(diagonals.mean().item()) < 0.06
    q, _ = torch.linalg.qr(torch.randn(200, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert q.diagonal(dim1=1, dim2=2).mean().item() < -0.1  # the bias this guards against


def test_gaussian_init_has_variance_gain_squared_over_width():
    model = theory.build_isometry_mlp(2, 256, "gaussian", "relu", seed=7)
    weights = torch.cat(
        [layer.weight.reshape(-1) for layer in model if isinstance(layer, nn.Linear)]
    )
    assert weights.var().item() == pytest.approx(2.0 / 256, rel=0.03)
    assert weights.mean().item() == pytest.approx(0.0, abs=1e-3)


def test_gaussian_deep_linear_spectrum_is_wide():
    summary = theory.isometry_experiment(32, 64, "gaussian", "linear")["summary"]
    assert summary["condition_number"] > 10
    assert summary["max_singular_value"] / summary["min_singular_value"] > 10


@pytest.mark.parametrize("input_std", [1.0, 0.1])
def test_orthogonal_tanh_spectrum_is_narrower_than_gaussian_relu(input_std):
    tanh = theory.isometry_experiment(32, 64, "orthogonal", "tanh", input_std=input_std)["summary"]
    relu = theory.isometry_experiment(32, 64, "gaussian", "relu", input_std=input_std)["summary"]
    assert relu["condition_number"] == math.inf  # ReLU zeroes rows of the Jacobian
    assert tanh["condition_number"] < 1e4
    ratio = relu["relative_variance_squared_singular_value"]
    assert tanh["relative_variance_squared_singular_value"] * 10 < ratio
    if input_std == 0.1:  # near the small fixed point q*, tanh is close to isometric
        assert tanh["condition_number"] < 5


def test_singular_value_summary_matches_loop():
    values = np.array([[3.0, 1.0], [2.0, 0.5]])
    squares = [v * v for row in values for v in row]
    mean = sum(squares) / len(squares)
    variance = sum((s - mean) ** 2 for s in squares) / len(squares)
    summary = theory.singular_value_summary(values)
    assert summary["mean_squared_singular_value"] == pytest.approx(mean)
    assert summary["variance_squared_singular_value"] == pytest.approx(variance)
    assert summary["relative_variance_squared_singular_value"] == pytest.approx(variance / mean**2)
    assert summary["condition_number"] == pytest.approx(6.0)
    assert theory.singular_value_summary(np.array([1.0, 0.0]))["condition_number"] == math.inf
    with pytest.raises(ValueError, match="empty"):
        theory.singular_value_summary(np.array([]))


def test_isometry_experiment_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    first = theory.isometry_experiment(4, 8, "gaussian", "tanh", seed=3, batch=2)
    second = theory.isometry_experiment(4, 8, "gaussian", "tanh", seed=3, batch=2)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(first["singular_values"], second["singular_values"])
    assert first["gain"] == pytest.approx(math.sqrt(1.0306), rel=1e-4)  # tanh's critical point
    assert theory.isometry_experiment(2, 4, "gaussian", "relu", batch=1)["gain"] == math.sqrt(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"init": "xavier"}, "init"),
        ({"activation": "gelu"}, "activation"),
        ({"gain": 0.0}, "gain"),
        ({"depth": 0}, "depth"),
        ({"batch": 0}, "batch"),
        ({"input_std": -1.0}, "input_std"),
    ],
)
def test_isometry_experiment_rejects_bad_settings(kwargs, message):
    settings = {"depth": 2, "width": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        theory.isometry_experiment(**settings)
