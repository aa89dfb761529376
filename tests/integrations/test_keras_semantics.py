"""Keras' semantics against Keras itself: clipnorm / global_clipnorm against graddoctor's
clip, Keras' initializer names against keras.initializers, and the keras-lecture scenario."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported

import math

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("keras was imported on another backend before this module", allow_module_level=True)

from graddoctor import clip, init  # noqa: E402
from graddoctor.integrations._keras_lecture import run_keras_lecture  # noqa: E402
from graddoctor.scenarios import (  # noqa: E402
    FRAMEWORK_SCENARIOS,
    available,
    keras_lecture,  # noqa: E402
)


def params_with(grads):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    return params


@pytest.mark.parametrize("option, per_tensor", [("clipnorm", True), ("global_clipnorm", False)])
def test_keras_clipping_equals_graddoctors(option, per_tensor):
    gen = torch.Generator().manual_seed(0)
    grads = [
        torch.randn(30, 20, generator=gen) * 3,
        torch.randn(20, generator=gen) * 0.01,
        torch.randn(5, generator=gen),
    ]
    keras_clipped = keras.optimizers.SGD(**{option: 1.0})._clip_gradients(
        [g.clone() for g in grads]
    )
    params = params_with(grads)
    clip.clip_grad_norm_(params, 1.0, per_tensor=per_tensor)
    for ours, theirs in zip(params, keras_clipped, strict=True):
        torch.testing.assert_close(ours.grad, theirs, rtol=1e-5, atol=1e-7)


def test_the_lectures_single_tensor_example():
    """clipnorm=1: [0.9, 100.0] -> [0.9, 100] / 100.00405 (the lecture rounds it to [0.00899, 0.999995])."""
    grad = torch.tensor([0.9, 100.0], dtype=torch.float64)
    (param,) = params_with([grad])
    clip.clip_grad_norm_([param], 1.0, per_tensor=True)
    theirs = keras.optimizers.SGD(clipnorm=1.0)._clip_gradients([grad.clone()])[0]
    norm = math.sqrt(0.9**2 + 100.0**2)
    assert param.grad.tolist() == pytest.approx([0.9 / norm, 100.0 / norm], rel=1e-6)
    assert theirs.tolist() == pytest.approx(param.grad.tolist(), rel=1e-6)
    assert param.grad[0].item() == pytest.approx(0.00899, abs=1e-5)


SPECS = [
    *init.KERAS_INITIALIZERS,
    init.VarianceScaling(
        scale=2.0, mode="fan_avg", distribution="uniform"
    ),  # the lecture's he_avg_init
    init.VarianceScaling(
        scale=0.5, mode="fan_out", distribution="normal"
    ),  # Keras: "normal" is truncated
    init.VarianceScaling(scale=1.0, mode="fan_in", distribution="untruncated_normal"),
]


def keras_initializer(spec):
    if isinstance(spec, str):
        return keras.initializers.get(spec)
    return keras.initializers.VarianceScaling(spec.scale, spec.mode, spec.distribution, seed=0)


@pytest.mark.parametrize("shape", [(300, 200), (3, 3, 16, 64)])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_keras_initializer_statistics_equal_keras(spec, shape):
    keras.utils.set_random_seed(0)
    theirs = keras.ops.convert_to_numpy(keras_initializer(spec)(shape)).astype(np.float64).ravel()
    ours = (
        init.keras_init_(torch.empty(shape), spec, generator=torch.Generator().manual_seed(1))
        .double()
        .numpy()
        .ravel()
    )
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)
    assert abs(ours.mean()) < 3 * theirs.std() / math.sqrt(ours.size)
    # the same bound (Keras' torch truncated normal keeps a value beyond it once in ~2e5 draws)
    assert np.quantile(np.abs(ours), 0.999) == pytest.approx(
        np.quantile(np.abs(theirs), 0.999), rel=0.05
    )
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    noise = 10 * theirs.std() / math.sqrt(ours.size)  # ~5 standard errors of a quantile difference
    np.testing.assert_allclose(
        np.quantile(ours, quantiles), np.quantile(theirs, quantiles), atol=noise
    )


def test_torch_layout_fills_the_transposed_kernel_alike():
    kernel = init.keras_init_(
        torch.empty(50, 400), "he_uniform", generator=torch.Generator().manual_seed(0)
    )
    weight = init.keras_init_(
        torch.empty(400, 50),
        "he_uniform",
        layout="torch",
        generator=torch.Generator().manual_seed(0),
    )
    limit = math.sqrt(6.0 / 50)  # fan_in = 50 both ways
    assert kernel.abs().max() <= limit and weight.abs().max() <= limit
    assert kernel.abs().max() > 0.99 * limit and weight.abs().max() > 0.99 * limit
    with pytest.raises(ValueError, match="unknown Keras initializer"):
        init.keras_init_(torch.empty(2, 2), "he_nromal")


def test_keras_lecture_scenario_holds_its_claim(tmp_path):
    assert keras_lecture.NAME in FRAMEWORK_SCENARIOS and keras_lecture.NAME not in available()
    outcome = run_keras_lecture(tmp_path)
    assert outcome.found == keras_lecture.EXPECTED_FINDINGS | {"sigmoid": outcome.found["sigmoid"]}
    assert "vanishing_gradients" in outcome.found["sigmoid"] and outcome.found["lecture"] == []
    assert outcome.spreads["lecture"] < 1.0 < outcome.spreads["sigmoid"]  # within one decade; not
    norms = keras_lecture.kernel_gradient_norms(outcome.run_paths["sigmoid"])
    assert list(norms) == ["dense.kernel", "dense_1.kernel", "dense_2.kernel"]
    first, *_, last = norms.values()
    assert (
        first < last / 30
    )  # the variant's first layer gets a small fraction of the last's gradient
    assert outcome.as_expected
