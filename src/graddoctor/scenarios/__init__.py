r"""Built-in reproducible scenarios: sick training problems from the literature.

Each scenario (a :class:`Scenario`) is a baseline :class:`~graddoctor.problem.Problem` that
shows a vanishing or exploding gradient effect reported in a paper, book or lecture,
the literature's own alternative configurations, the remedies worth comparing, and the
findings a correct diagnosis names. Everything is generated locally from the seed with
``torch.Generator`` (nothing downloaded, the global random state untouched) and is small
enough to train for its ``steps`` in seconds on one CPU thread.

>>> from graddoctor.scenarios import available, get_scenario
>>> "deep-relu-bn" in available()
True
>>> get_scenario("deep-relu-bn").variants.keys()
dict_keys(['batchnorm'])

``keras_lecture`` is the lecture's own Keras MLP, trained with Keras through
``graddoctor.integrations.keras``: it is listed in :data:`FRAMEWORK_SCENARIOS`, not in
:func:`available` (whose scenarios are PyTorch Problems).
"""

from __future__ import annotations

from collections.abc import Callable

from graddoctor.scenarios import (
    deep_linear,
    deep_relu_bn,
    exploding,
    keras_lecture,
    rnn_long_range,
    selu,
    sigmoid_saturation,
    xavier_vs_he,
)
from graddoctor.scenarios._base import Scenario, check_seed
from graddoctor.scenarios.deep_linear import deep_linear_measurements
from graddoctor.scenarios.rnn_long_range import time_step_gradient_norms
from graddoctor.scenarios.selu import layer_statistics

_BUILDERS: dict[str, Callable[[int], Scenario]] = {
    exploding.NAME: exploding.build,
    deep_relu_bn.NAME: deep_relu_bn.build,
    sigmoid_saturation.NAME: sigmoid_saturation.build,
    xavier_vs_he.NAME: xavier_vs_he.build,
    deep_linear.NAME: deep_linear.build,
    rnn_long_range.NAME: rnn_long_range.build,
    selu.NAME: selu.build,
}

# scenarios trained through a framework integration rather than as a Problem: name ->
# the framework (``graddoctor demo`` runs them when it is installed)
FRAMEWORK_SCENARIOS: dict[str, str] = {keras_lecture.NAME: keras_lecture.FRAMEWORK}


def available() -> list[str]:
    """The names of the built-in scenarios, in a fixed order."""
    return list(_BUILDERS)


def get_scenario(name: str, seed: int = 0) -> Scenario:
    """Build the scenario called ``name`` (see :func:`available`) for ``seed``.

    The same name and seed always give the same data and the same initial weights.

    Raises:
        KeyError: ``name`` is not a built-in scenario (the message lists them).
        TypeError, ValueError: ``seed`` is not a non-negative int.
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown scenario {name!r}; available scenarios: {', '.join(_BUILDERS)}")
    return _BUILDERS[name](check_seed(seed))


__all__ = [
    "FRAMEWORK_SCENARIOS",
    "Scenario",
    "available",
    "deep_linear_measurements",
    "get_scenario",
    "layer_statistics",
    "time_step_gradient_norms",
]
