r"""Closed forms and spectra that explain vanishing and exploding gradients.

Three pieces of theory, each checked against autograd in ``tests/theory/test_theory.py``:

* the deep linear scalar chain :math:`a_i = w a_{i-1} + b`, whose activations and
  gradients scale like :math:`w^i` and :math:`w^{n-i}` (lecture slides "Vanishing and
  Exploding Gradients - A Simple Example");
* the recurrent Jacobian bound
  :math:`\|\partial h_t / \partial h_k\| \le (\gamma_W \gamma_h)^{t-k}` and the spectra
  of recurrent matrices (Pascanu, Mikolov & Bengio 2013; Jefkine 2018, eq. 10-12);
* the singular values of the input-output Jacobian at initialisation, i.e. dynamical
  isometry (Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017).

All functions return floats or numpy arrays and never change the model they measure.
One module per family: ``linear_chain``, ``recurrent``, ``isometry``.
"""

from .isometry import (
    build_isometry_mlp,
    isometry_experiment,
    jacobian_singular_values,
    singular_value_summary,
)
from .linear_chain import (
    build_linear_chain,
    linear_chain_activations,
    linear_chain_input_gradients,
    linear_chain_weight_gradients,
)
from .recurrent import (
    activation_derivative_bound,
    jacobian_bound,
    largest_singular_value,
    recurrent_spectra,
    spectral_radius,
)

__all__ = [
    "activation_derivative_bound",
    "build_isometry_mlp",
    "build_linear_chain",
    "isometry_experiment",
    "jacobian_bound",
    "jacobian_singular_values",
    "largest_singular_value",
    "linear_chain_activations",
    "linear_chain_input_gradients",
    "linear_chain_weight_gradients",
    "recurrent_spectra",
    "singular_value_summary",
    "spectral_radius",
]
