"""Echo state networks: reservoir spectrum, states, closed-form ridge readout, memory tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graddoctor.remedies.recurrent import EchoStateNetwork

from ..conftest import generator

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def naive_states(esn, inputs):
    """s_t = (1 - leak) s_{t-1} + leak tanh(W_in u_t + W s_{t-1}), in numpy, one sequence at a time."""
    w, w_in = esn.reservoir_weight.numpy(), esn.input_weight.numpy()
    u = inputs.numpy()
    out = np.zeros((u.shape[0], u.shape[1], w.shape[0]))
    for b in range(u.shape[0]):
        s = np.zeros(w.shape[0])
        for t in range(u.shape[1]):
            s = (1 - esn.leak) * s + esn.leak * np.tanh(w_in @ u[b, t] + w @ s)
            out[b, t] = s
    return out


def naive_ridge(design, targets, ridge):
    """min ||X w - y||^2 + ridge ||w||^2 with a bias column, as an augmented least squares."""
    x = np.hstack([design, np.ones((design.shape[0], 1))])
    augmented_x = np.vstack([x, math.sqrt(ridge) * np.eye(x.shape[1])])
    augmented_y = np.vstack([targets, np.zeros((x.shape[1], targets.shape[1]))])
    solution = np.linalg.lstsq(augmented_x, augmented_y, rcond=None)[0]
    return solution[:-1].T, solution[-1]


@pytest.mark.parametrize("density", [1.0, 0.2])
def test_reservoir_spectral_radius_and_fixed_weights(density):
    esn = EchoStateNetwork(2, 40, 1, spectral_radius=0.8, density=density, generator=generator(1), dtype=F64)
    radius = float(torch.linalg.eigvals(esn.reservoir_weight).abs().max())
    assert math.isclose(radius, 0.8, rel_tol=1e-10)
    if density < 1:
        assert 0.1 < float((esn.reservoir_weight != 0).double().mean()) < 0.3
    assert set(dict(esn.named_buffers())) == {"reservoir_weight", "input_weight"}
    assert set(dict(esn.named_parameters())) == {"readout.weight", "readout.bias"}
    assert float(esn.input_weight.abs().max()) <= 1.0
    assert esn.reservoir_weight.dtype == esn.readout.weight.dtype == F64
    twin = EchoStateNetwork(2, 40, 1, spectral_radius=0.8, density=density, generator=generator(1), dtype=F64)
    torch.testing.assert_close(twin.reservoir_weight, esn.reservoir_weight)


def test_states_match_naive_loop():
    esn = EchoStateNetwork(3, 10, 2, leak=0.3, input_scale=0.5, generator=generator(2), dtype=F64)
    inputs = torch.randn(2, 7, 3, generator=generator(3), dtype=F64)
    np.testing.assert_allclose(esn.states(inputs).numpy(), naive_states(esn, inputs), rtol=1e-12, atol=1e-14)
    assert float(esn.input_weight.abs().max()) <= 0.5


@pytest.mark.parametrize("readout,washout", [("all", 0), ("all", 4), ("last", 0)])
def test_fit_matches_naive_ridge(readout, washout):
    esn = EchoStateNetwork(2, 15, 3, ridge=0.1, readout=readout, generator=generator(4), dtype=F64)
    inputs = torch.randn(4, 9, 2, generator=generator(5), dtype=F64)
    shape = (4, 3) if readout == "last" else (4, 9, 3)
    targets = torch.randn(*shape, generator=generator(6), dtype=F64)
    assert esn.fit(inputs, targets, washout=washout) is esn
    states = naive_states(esn, inputs)
    design = states[:, -1] if readout == "last" else states[:, washout:].reshape(-1, 15)
    wanted = targets.numpy() if readout == "last" else targets[:, washout:].reshape(-1, 3).numpy()
    weight, bias = naive_ridge(design, wanted, 0.1)
    np.testing.assert_allclose(esn.readout.weight.detach().numpy(), weight, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(esn.readout.bias.detach().numpy(), bias, rtol=1e-8, atol=1e-10)
    predictions = esn(inputs).detach().numpy()
    expected = (design @ weight.T + bias).reshape(predictions[:, washout:].shape if readout == "all" else (4, 3))
    np.testing.assert_allclose(predictions[:, washout:] if readout == "all" else predictions, expected,
                               rtol=1e-10, atol=1e-12)


def nrmse(prediction, target):
    return float(((prediction - target).square().mean() / target.var()).sqrt())


def test_learns_sine_prediction():
    t = torch.arange(0, 400, dtype=F64)
    wave = torch.sin(0.2 * t)
    esn = EchoStateNetwork(1, 60, 1, spectral_radius=0.9, readout="all", ridge=1e-8, generator=generator(7),
                           dtype=F64)
    esn.fit(wave[None, :300, None], wave[None, 1:301, None], washout=50)
    test_wave = torch.sin(0.2 * t + 1.234)
    prediction = esn(test_wave[None, :300, None])[0, 50:, 0]
    assert nrmse(prediction.detach(), test_wave[51:301]) < 1e-3


def test_learns_delayed_recall():
    delay = 3
    signal = torch.rand(2, 800, 1, generator=generator(8), dtype=F64) - 0.5
    esn = EchoStateNetwork(1, 80, 1, spectral_radius=0.9, readout="all", ridge=1e-8, generator=generator(9),
                           dtype=F64)
    esn.fit(signal[:, delay:], signal[:, :-delay], washout=30)
    fresh = torch.rand(1, 400, 1, generator=generator(10), dtype=F64) - 0.5
    prediction = esn(fresh[:, delay:])[:, 30:]
    assert nrmse(prediction.detach(), fresh[:, 30:-delay]) < 0.1
    # an untrained readout does not recall
    assert nrmse(EchoStateNetwork(1, 80, 1, readout="all", dtype=F64)(fresh[:, delay:])[:, 30:].detach(),
                 fresh[:, 30:-delay]) > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="allow_unstable"):
        EchoStateNetwork(1, 10, 1, spectral_radius=1.1)
    unstable = EchoStateNetwork(1, 10, 1, spectral_radius=1.1, allow_unstable=True, generator=generator(0))
    assert math.isclose(float(torch.linalg.eigvals(unstable.reservoir_weight.double()).abs().max()), 1.1,
                        rel_tol=1e-5)
    for kwargs, match in (({"leak": 0.0}, "leak"), ({"density": 1.5}, "density"), ({"ridge": -1.0}, "ridge"),
                          ({"readout": "first"}, "readout"), ({"spectral_radius": 0.0}, "spectral_radius")):
        with pytest.raises(ValueError, match=match):
            EchoStateNetwork(1, 10, 1, **kwargs)
    esn = EchoStateNetwork(2, 10, 1, readout="all")
    with pytest.raises(ValueError, match="targets must be"):
        esn.fit(torch.randn(3, 5, 2), torch.randn(3, 1))
    with pytest.raises(ValueError, match="washout"):
        esn.fit(torch.randn(3, 5, 2), torch.randn(3, 5, 1), washout=5)
    with pytest.raises(ValueError, match="inputs"):
        esn(torch.randn(3, 5, 4))
