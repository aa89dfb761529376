r"""Closed forms for the deep linear scalar chain.

The chain has :math:`n` layers :math:`a_i = w_i a_{i-1} + b_i` with :math:`a_0 = x` and
all :math:`w_i = w`, :math:`b_i = b`. It is the smallest model in which activations and
gradients vanish (:math:`w < 1`), stay put (:math:`w = 1`) or explode (:math:`w > 1`).

Source: lecture slides "Vanishing and Exploding Gradients - A Simple Example",
tables "Layer / Activation" and "Layer / Gradient".
"""

from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# Within this distance of 1 the geometric sum is evaluated through log1p/expm1, which
# keeps full relative precision where (1 - w**i) / (1 - w) would cancel.
_NEAR_ONE = 0.5


def _as_real(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _as_depth(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n (the number of layers) must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n (the number of layers) must be >= 1, got {n}")
    return int(n)


def _geometric_sum(w: float, counts: np.ndarray) -> np.ndarray:
    r"""Return :math:`\sum_{k=0}^{i-1} w^k` for every :math:`i` in ``counts``, stably."""
    counts = counts.astype(np.float64)
    if w == 1.0:
        return counts
    step = w - 1.0
    if w > 0.0 and abs(step) < _NEAR_ONE:
        # (w^i - 1) / (w - 1) = expm1(i log1p(w - 1)) / (w - 1); w - 1 is exact here.
        with np.errstate(over="ignore"):
            return np.expm1(counts * np.log1p(step)) / step
    with np.errstate(over="ignore", invalid="ignore"):
        return (1.0 - np.power(w, counts)) / (1.0 - w)


def linear_chain_activations(x: float, w: float, b: float, n: int) -> np.ndarray:
    r"""Activations :math:`a_1, \dots, a_n` of the deep linear scalar chain, in closed form.

    .. math::
        a_i = w^i x + b \sum_{k=0}^{i-1} w^k = w^i x + b \, \frac{1 - w^i}{1 - w},
        \qquad a_i = x + i b \text{ when } w = 1.

    For :math:`w` near 1 the geometric sum is evaluated as
    :math:`\operatorname{expm1}(i \log1p(w - 1)) / (w - 1)`, which does not cancel.
    Source: the lecture slides' deep linear network, "Layer / Activation" table.

    Args:
        x: the input :math:`a_0`.
        w: the weight shared by every layer.
        b: the bias shared by every layer.
        n: the number of layers (>= 1).

    Returns:
        float64 numpy array of shape ``[n]``; entry ``i - 1`` is :math:`a_i`.
        Entries overflow to ``inf`` when :math:`|w|^n` does.
    """
    x, w, b, n = _as_real("x", x), _as_real("w", w), _as_real("b", b), _as_depth(n)
    counts = np.arange(1, n + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.power(w, counts.astype(np.float64)) * x + b * _geometric_sum(w, counts)


def linear_chain_input_gradients(w: float, n: int) -> np.ndarray:
    r"""Gradients :math:`\partial a_n / \partial a_i` of the scalar chain, for :math:`i = 1..n`.

    .. math::
        \frac{\partial a_n}{\partial a_i} = \prod_{k=i+1}^{n} w_k = w^{n-i}

    The same numbers are the bias gradients :math:`\partial a_n / \partial b_i`, and
    :math:`\partial a_n / \partial x = w \cdot \partial a_n / \partial a_1`.
    Source: the lecture slides' "Layer / Gradient" table.

    Args:
        w: the weight shared by every layer.
        n: the number of layers (>= 1).

    Returns:
        float64 numpy array of shape ``[n]``; entry ``i - 1`` is :math:`w^{n-i}`
        (so the last entry is 1).
    """
    w, n = _as_real("w", w), _as_depth(n)
    exponents = np.arange(n - 1, -1, -1, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.power(w, exponents)


def linear_chain_weight_gradients(x: float, w: float, b: float, n: int) -> np.ndarray:
    r"""Weight gradients :math:`\partial a_n / \partial w_i` of the scalar chain, :math:`i = 1..n`.

    .. math::
        \frac{\partial a_n}{\partial w_i} = a_{i-1} \prod_{k=i+1}^{n} w_k
        = a_{i-1} \, w^{n-i}, \qquad a_0 = x.

    Exact for the scalar chain (no approximation when all :math:`w_i = w`).
    Source: the lecture slides' "Layer / Gradient" table.

    Args:
        x: the input :math:`a_0`.
        w: the weight shared by every layer.
        b: the bias shared by every layer.
        n: the number of layers (>= 1).

    Returns:
        float64 numpy array of shape ``[n]``; entry ``i - 1`` is
        :math:`\partial a_n / \partial w_i`.
    """
    x = _as_real("x", x)
    activations = linear_chain_activations(x, w, b, n)
    previous = np.concatenate(([x], activations[:-1]))
    with np.errstate(over="ignore", invalid="ignore"):
        return previous * linear_chain_input_gradients(w, n)


def build_linear_chain(
    n: int, w: float, b: float, dtype: torch.dtype = torch.float64
) -> nn.Sequential:
    r"""Build the scalar chain as ``n`` layers ``nn.Linear(1, 1)`` with weight ``w``, bias ``b``.

    .. math::
        a_i = w a_{i-1} + b, \qquad a_0 = x

    The layers are named ``layer_1`` .. ``layer_n``; the global random number generator is
    not used. Source: the lecture slides' deep linear network.

    Args:
        n: the number of layers (>= 1).
        w: the weight of every layer.
        b: the bias of every layer.
        dtype: floating point dtype of the parameters.

    Returns:
        ``nn.Sequential`` mapping inputs of shape ``[batch, 1]`` to ``[batch, 1]``.
    """
    w, b, n = _as_real("w", w), _as_real("b", b), _as_depth(n)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating point torch.dtype, got {dtype!r}")
    layers = OrderedDict()
    for index in range(1, n + 1):
        layer = nn.utils.skip_init(nn.Linear, 1, 1, dtype=dtype)
        with torch.no_grad():
            layer.weight.fill_(w)
            layer.bias.fill_(b)
        layers[f"layer_{index}"] = layer
    return nn.Sequential(layers)
