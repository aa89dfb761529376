"""Issue 10 item 11: the isometry experiment's tanh defaults sit at the critical point.

Pennington, Schoenholz & Ganguli (2017) put tanh networks at a critical point
(sigma_w^2, sigma_b^2) with a small fixed point q* = 1/64; there orthogonal weights keep
the mean squared singular value of the input-output Jacobian near 1 at any depth.
"""

import math

import numpy as np
import pytest
import torch

from graddoctor import theory
from graddoctor.theory._mean_field import tanh_critical_point


def naive_tanh_critical_point(q_star: float, samples: int = 400_001) -> tuple[float, float]:
    """The critical point by a plain Riemann sum over the density of h ~ N(0, q*)."""
    h = np.linspace(-12.0, 12.0, samples) * math.sqrt(q_star)
    density = np.exp(-(h**2) / (2 * q_star)) / math.sqrt(2 * math.pi * q_star) * (h[1] - h[0])
    sigma_w2 = 1.0 / np.sum(density * (1 - np.tanh(h) ** 2) ** 2)
    return sigma_w2, q_star - sigma_w2 * np.sum(density * np.tanh(h) ** 2)


@pytest.mark.parametrize("q_star", [1 / 64, 0.5, 2.0, 100.0])
def test_critical_point_matches_the_paper_and_a_riemann_sum(q_star):
    sigma_w2, sigma_b2 = tanh_critical_point(q_star)
    want_w2, want_b2 = naive_tanh_critical_point(q_star)
    assert sigma_w2 == pytest.approx(want_w2, rel=1e-7)
    assert sigma_b2 == pytest.approx(want_b2, rel=1e-5, abs=1e-15)
    if q_star == 1 / 64:  # the numbers quoted by Pennington et al. (2017)
        assert sigma_w2 == pytest.approx(1.0306, abs=1e-4)
        assert sigma_b2 == pytest.approx(4.65e-6, rel=1e-3)


def test_default_tanh_network_is_built_at_the_critical_point():
    model = theory.build_isometry_mlp(4, 256, "gaussian", "tanh", seed=1)
    linears = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
    weights = torch.cat([layer.weight.reshape(-1) for layer in linears])
    biases = torch.cat([layer.bias for layer in linears])
    assert (weights.var() * 256).item() == pytest.approx(1.0306, rel=0.02)
    assert biases.var().item() == pytest.approx(4.65e-6, rel=0.1)
    bare = theory.build_isometry_mlp(2, 8, "orthogonal", "relu")
    assert all(layer.bias is None for layer in bare if isinstance(layer, torch.nn.Linear))


def test_default_tanh_inputs_put_the_first_layer_at_the_fixed_point():
    result = theory.isometry_experiment(1, 8, batch=1)
    sigma_w2, sigma_b2 = tanh_critical_point(1 / 64)
    assert result["input_std"] ** 2 * sigma_w2 + sigma_b2 == pytest.approx(1 / 64)
    assert result["bias_std"] == pytest.approx(math.sqrt(sigma_b2))


def test_orthogonal_critical_tanh_keeps_mean_squared_singular_value_near_one():
    # before: 0.27, 0.078, 0.019, 0.0046 (gain 1, no bias, unit inputs: not critical)
    means = {
        depth: theory.isometry_experiment(depth, 128, batch=4)["summary"][
            "mean_squared_singular_value"
        ]
        for depth in (2, 8, 32, 128)
    }
    assert all(0.9 <= mean <= 1.1 for mean in means.values()), means


def test_gaussian_relu_spectrum_still_widens_with_depth():
    relu = theory.isometry_experiment(32, 64, "gaussian", "relu", batch=4)["summary"]
    tanh = theory.isometry_experiment(32, 64, batch=4)["summary"]
    assert relu["condition_number"] == math.inf  # ReLU zeroes rows of the Jacobian
    assert relu["relative_variance_squared_singular_value"] > 10
    assert tanh["relative_variance_squared_singular_value"] < 1
    assert tanh["condition_number"] < 10
