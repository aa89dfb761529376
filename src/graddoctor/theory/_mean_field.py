r"""Mean-field signal propagation through a deep tanh network at initialisation.

A layer :math:`h^l = W^l \phi(h^{l-1}) + b^l` with weight variance :math:`\sigma_w^2 / N`
and bias variance :math:`\sigma_b^2` maps the pre-activation variance :math:`q` to

.. math::
    q^{l} = \sigma_w^2 \, \mathbb{E}_{z}\big[\phi(\sqrt{q^{l-1}} z)^2\big] + \sigma_b^2,
    \qquad z \sim \mathcal{N}(0, 1),

and the mean squared singular value of one layer's Jacobian at the fixed point
:math:`q^*` is :math:`\chi = \sigma_w^2 \, \mathbb{E}_z[\phi'(\sqrt{q^*} z)^2]`. On the
critical line :math:`\chi = 1` gradients keep their size on average over any depth.

Sources: Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in
deep neural networks through transient chaos", NeurIPS 2016; Pennington, Schoenholz &
Ganguli, "Resurrecting the sigmoid in deep learning through dynamical isometry: theory
and practice", NeurIPS 2017 (whose tanh experiments sit at :math:`q^* = 1/64`).
"""

from __future__ import annotations

import math

import numpy as np

# Pennington, Schoenholz & Ganguli (2017): a small fixed point keeps tanh nearly linear
DEFAULT_Q_STAR = 1.0 / 64.0
# the trapezoid rule over z in [-10, 10]: spectrally accurate for these smooth integrands
# while the step stays well below the distance pi / (2 sqrt(q*)) of tanh's poles
_QUADRATURE_POINTS = 40_001
_QUADRATURE_RANGE = 10.0


def tanh_critical_point(q_star: float = DEFAULT_Q_STAR) -> tuple[float, float]:
    r"""The weight and bias variances that make ``q_star`` a critical fixed point of tanh.

    .. math::
        \sigma_w^2 = \frac{1}{\mathbb{E}_z[\tanh'(\sqrt{q^*} z)^2]}, \qquad
        \sigma_b^2 = q^* - \sigma_w^2 \, \mathbb{E}_z[\tanh(\sqrt{q^*} z)^2]

    The expectations are trapezoid sums over the Gaussian density. :math:`q^* = 1/64` gives
    :math:`\sigma_w^2 = 1.0306`, :math:`\sigma_b^2 = 4.65 \cdot 10^{-6}` (Pennington,
    Schoenholz & Ganguli 2017).

    Args:
        q_star: the fixed point :math:`q^*` of the pre-activation variance (> 0).

    Returns:
        ``(sigma_w2, sigma_b2)``.
    """
    if isinstance(q_star, bool) or not isinstance(q_star, (int, float)) or not q_star > 0:
        raise ValueError(f"q_star must be a positive number, got {q_star!r}")
    nodes = np.linspace(-_QUADRATURE_RANGE, _QUADRATURE_RANGE, _QUADRATURE_POINTS)
    weights = np.exp(-(nodes**2) / 2)
    weights = weights / weights.sum()
    pre_activations = math.sqrt(q_star) * nodes
    slopes = 1.0 / np.cosh(pre_activations) ** 2
    sigma_w2 = 1.0 / float(np.sum(weights * slopes**2))
    sigma_b2 = q_star - sigma_w2 * float(np.sum(weights * np.tanh(pre_activations) ** 2))
    return sigma_w2, sigma_b2


__all__ = ["DEFAULT_Q_STAR", "tanh_critical_point"]
