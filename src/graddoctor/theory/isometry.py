r"""Singular values of the input-output Jacobian at initialisation (dynamical isometry).

A deep network :math:`x^l = \phi(W^l x^{l-1})` has the Jacobian
:math:`J = \prod_{l=L}^{1} D^l W^l` with :math:`D^l = \operatorname{diag}(\phi'(h^l))`.
Gradients neither vanish nor explode in any direction when all singular values of
:math:`J` are close to 1 ("dynamical isometry"): exactly so for deep linear networks
with orthogonal weights, approximately for tanh networks with orthogonal weights at a
critical point :math:`(\sigma_w^2, \sigma_b^2)` whose fixed point :math:`q^*` is small
(the tanh defaults here: :math:`q^* = 1/64`, see :mod:`graddoctor.theory._mean_field`),
and never for ReLU or Gaussian weights, whose spectra widen with depth.

Sources: Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks", ICLR 2014; Pennington, Schoenholz & Ganguli,
"Resurrecting the sigmoid in deep learning through dynamical isometry: theory and
practice", NeurIPS 2017.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from ._mean_field import DEFAULT_Q_STAR, tanh_critical_point

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": None}
_INITS = ("orthogonal", "gaussian")
# tanh at Pennington, Schoenholz & Ganguli's (2017) critical point with q* = 1/64:
# sigma_w^2 = 1.0306, sigma_b^2 = 4.65e-6
_TANH_WEIGHT_VARIANCE, _TANH_BIAS_VARIANCE = tanh_critical_point(DEFAULT_Q_STAR)
_DEFAULT_GAINS = {"tanh": math.sqrt(_TANH_WEIGHT_VARIANCE), "linear": 1.0, "relu": math.sqrt(2.0)}
_DEFAULT_BIAS_STDS = {"tanh": math.sqrt(_TANH_BIAS_VARIANCE), "linear": 0.0, "relu": 0.0}
# inputs whose first pre-activations W x + b have the fixed point's variance q*
_DEFAULT_INPUT_STDS = {
    "tanh": math.sqrt((DEFAULT_Q_STAR - _TANH_BIAS_VARIANCE) / _TANH_WEIGHT_VARIANCE),
    "linear": 1.0,
    "relu": 1.0,
}


def _per_sample_jacobians(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Return the Jacobians ``[batch, out_numel, in_numel]`` of ``model`` at each sample."""

    def one_sample(sample: torch.Tensor) -> torch.Tensor:
        output = model(sample.unsqueeze(0))
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"model must return a tensor, got {type(output).__name__}")
        return output.squeeze(0)

    inputs = inputs.detach()
    batch, in_numel = inputs.shape[0], inputs[0].numel()
    with torch.enable_grad():
        try:
            jacobians = torch.func.vmap(torch.func.jacrev(one_sample))(inputs)
        except (RuntimeError, NotImplementedError, ValueError):
            # vmap cannot run data-dependent control flow, .item(), random ops, ...
            jacobians = torch.stack(
                [torch.autograd.functional.jacobian(one_sample, sample) for sample in inputs]
            )
    return jacobians.detach().reshape(batch, -1, in_numel)


def jacobian_singular_values(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    r"""Singular values of the input-output Jacobian :math:`\partial f(x) / \partial x` per sample.

    .. math::
        J(x) = \frac{\partial f(x)}{\partial x} = U \operatorname{diag}(\sigma_1 \ge
        \dots \ge \sigma_m) V^\top, \qquad m = \min(\text{out}, \text{in})

    Each sample is passed alone (batch of one), with ``torch.func.vmap(jacrev)`` where the
    model allows it and ``torch.autograd.functional.jacobian`` per sample otherwise.
    Inputs and outputs are flattened per sample. The model is not changed; put it in
    ``eval()`` mode first if it has dropout or batch norm. Source: Saxe et al. (2014);
    Pennington, Schoenholz & Ganguli (2017).

    Args:
        model: maps ``[batch, *in_shape]`` to ``[batch, *out_shape]``.
        inputs: tensor ``[batch, *in_shape]`` of points at which to take the Jacobian.

    Returns:
        float64 numpy array ``[batch, min(out_numel, in_numel)]``, each row descending.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError("inputs must be a floating point torch.Tensor [batch, *in_shape]")
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must have shape [batch, *in_shape] with batch >= 1, got {tuple(inputs.shape)}"
        )
    jacobians = _per_sample_jacobians(model, inputs)
    if jacobians.dtype in (torch.float16, torch.bfloat16):
        jacobians = jacobians.float()
    return torch.linalg.svdvals(jacobians).cpu().numpy().astype(np.float64)


def _orthogonal_matrix(width: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    gaussian = torch.randn(width, width, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # Sign correction makes Q Haar-distributed (Mezzadri 2007).
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def build_isometry_mlp(
    depth: int,
    width: int,
    init: str = "orthogonal",
    activation: str = "tanh",
    gain: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    bias_std: float | None = None,
) -> nn.Sequential:
    r"""Build a deep MLP ``width -> width`` initialised for a dynamical isometry study.

    .. math::
        x^l = \phi(W^l x^{l-1} + b^l), \qquad W^l = g\, Q \ (\text{orthogonal}) \quad\text{or}\quad
        W^l_{jk} \sim \mathcal{N}(0, g^2 / \text{width}) \ (\text{gaussian}), \qquad
        b^l_j \sim \mathcal{N}(0, \sigma_b^2)

    Orthogonal matrices come from the QR decomposition of a Gaussian matrix with the signs
    of :math:`\operatorname{diag}(R)` moved into :math:`Q`. Defaults: for tanh the
    critical point of Pennington, Schoenholz & Ganguli (2017) with fixed point
    :math:`q^* = 1/64`, :math:`g^2 = \sigma_w^2 = 1.0306` and :math:`\sigma_b^2 = 4.65
    \cdot 10^{-6}`; for linear :math:`g = 1` and for ReLU :math:`g = \sqrt2` (He et al.
    2015), both without bias. Uses its own ``torch.Generator`` seeded with ``seed``, not
    the global one. Source: Saxe et al. (2014); Pennington, Schoenholz & Ganguli (2017).

    Args:
        depth: number of layers (>= 1).
        width: width of every layer (>= 1).
        init: ``"orthogonal"`` or ``"gaussian"``.
        activation: ``"tanh"``, ``"relu"`` or ``"linear"``, applied after every layer.
        gain: weight scale :math:`g` (> 0); ``None`` picks the default above.
        seed: seed of the weight generator.
        dtype: parameter dtype.
        bias_std: :math:`\sigma_b` (>= 0); ``None`` picks the default above; 0 builds
            layers without bias.

    Returns:
        ``nn.Sequential`` with layers ``linear_1, activation_1, ..., linear_depth, ...``.
    """
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if init not in _INITS:
        raise ValueError(f"init must be one of {list(_INITS)}, got {init!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    gain = _DEFAULT_GAINS[activation] if gain is None else gain
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
        raise ValueError(f"gain must be a positive number or None, got {gain!r}")
    bias_std = _DEFAULT_BIAS_STDS[activation] if bias_std is None else bias_std
    if isinstance(bias_std, bool) or not isinstance(bias_std, (int, float)) or not bias_std >= 0:
        raise ValueError(f"bias_std must be a number >= 0 or None, got {bias_std!r}")
    generator = torch.Generator().manual_seed(int(seed))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index in range(1, depth + 1):
        linear = nn.utils.skip_init(nn.Linear, width, width, bias=bias_std > 0, dtype=dtype)
        if init == "orthogonal":
            weight = gain * _orthogonal_matrix(width, generator, dtype)
        else:
            weight = torch.randn(width, width, generator=generator, dtype=torch.float64)
            weight = (weight * (gain / math.sqrt(width))).to(dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if linear.bias is not None:
                bias = torch.randn(width, generator=generator, dtype=torch.float64)
                linear.bias.copy_(bias_std * bias)
        layers[f"linear_{index}"] = linear
        if _ACTIVATIONS[activation] is not None:
            layers[f"{activation}_{index}"] = _ACTIVATIONS[activation]()
    return nn.Sequential(layers)


def singular_value_summary(singular_values: np.ndarray) -> dict[str, float]:
    r"""Summarise a Jacobian spectrum, pooled over samples.

    .. math::
        \overline{\sigma^2} = \frac{1}{N} \sum_j \sigma_j^2, \qquad
        \operatorname{Var}(\sigma^2), \qquad
        \frac{\operatorname{Var}(\sigma^2)}{(\overline{\sigma^2})^2}, \qquad
        \kappa = \sigma_{\max} / \sigma_{\min}

    :math:`\overline{\sigma^2} \approx 1` means gradients keep their size on average;
    a small :math:`\operatorname{Var}(\sigma^2)` (Pennington et al. 2017), its
    scale-free relative version and a small condition number mean they keep it in every
    direction.

    Args:
        singular_values: array of singular values (any shape).

    Returns:
        dict of floats: ``mean_squared_singular_value``, ``variance_squared_singular_value``,
        ``relative_variance_squared_singular_value`` (``nan`` when all are 0),
        ``max_singular_value``, ``min_singular_value``, ``condition_number`` (``inf`` when
        the smallest is 0).
    """
    values = np.asarray(singular_values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("singular_values is empty; nothing to summarise")
    squared = values**2
    largest, smallest = float(values.max()), float(values.min())
    mean, variance = float(squared.mean()), float(squared.var())
    return {
        "mean_squared_singular_value": mean,
        "variance_squared_singular_value": variance,
        "relative_variance_squared_singular_value": variance / mean**2 if mean > 0 else math.nan,
        "max_singular_value": largest,
        "min_singular_value": smallest,
        "condition_number": largest / smallest if smallest > 0 else math.inf,
    }


def isometry_experiment(
    depth: int,
    width: int,
    init: str = "orthogonal",
    activation: str = "tanh",
    gain: float | None = None,
    batch: int = 8,
    seed: int = 0,
    input_std: float | None = None,
    bias_std: float | None = None,
) -> dict[str, Any]:
    r"""Jacobian spectrum of a freshly initialised deep MLP (dynamical isometry experiment).

    .. math::
        J = \prod_{l=L}^{1} D^l W^l, \qquad D^l = \operatorname{diag}(\phi'(h^l))

    Builds :func:`build_isometry_mlp` in float64, draws ``batch`` inputs
    :math:`x \sim \mathcal{N}(0, s^2 I)` from a generator seeded with ``seed + 1`` and
    returns the singular values of :math:`J` at each of them. The tanh defaults reproduce
    Pennington, Schoenholz & Ganguli (2017): at the critical point with :math:`q^* = 1/64`
    and inputs whose first pre-activations have variance :math:`q^*`, orthogonal weights
    keep the mean squared singular value near 1 at any depth (0.99 to 0.92 for
    :math:`L = 2..128`, width 64) with a narrow spectrum, where Gaussian weights or ReLU
    widen it with depth. Away from :math:`q^*` (e.g. ``input_std=1`` with ``gain=1``,
    ``bias_std=0``) the mean squared singular value decays with depth. A linear orthogonal
    net has all singular values :math:`g^L` (Saxe et al. 2014).

    Args:
        depth: number of layers (>= 1).
        width: width of every layer (>= 1).
        init: ``"orthogonal"`` or ``"gaussian"``.
        activation: ``"tanh"``, ``"relu"`` or ``"linear"``.
        gain: weight scale; ``None`` for the defaults of :func:`build_isometry_mlp`.
        batch: number of input samples (>= 1).
        seed: seed of the weights (the inputs use ``seed + 1``).
        input_std: standard deviation :math:`s` of the inputs (> 0); ``None`` for tanh
            puts the first pre-activations at :math:`q^*`
            (:math:`s^2 = (q^* - \sigma_b^2) / \sigma_w^2` with the default
            :math:`\sigma_w, \sigma_b`), 1 otherwise.
        bias_std: :math:`\sigma_b`; ``None`` for the defaults of :func:`build_isometry_mlp`.

    Returns:
        dict with ``singular_values`` (float64 numpy array ``[batch, width]``), ``summary``
        (see :func:`singular_value_summary`) and the settings ``depth``, ``width``, ``init``,
        ``activation``, ``gain``, ``bias_std``, ``input_std`` (the ones used), ``batch``,
        ``seed``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if input_std is None:
        input_std = _DEFAULT_INPUT_STDS.get(activation, 1.0)
    if isinstance(input_std, bool) or not isinstance(input_std, (int, float)) or not input_std > 0:
        raise ValueError(f"input_std must be a positive number, got {input_std!r}")
    model = build_isometry_mlp(depth, width, init, activation, gain, seed, torch.float64, bias_std)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    inputs = input_std * torch.randn(batch, width, generator=generator, dtype=torch.float64)
    singular_values = jacobian_singular_values(model, inputs)
    return {
        "singular_values": singular_values,
        "summary": singular_value_summary(singular_values),
        "depth": depth,
        "width": width,
        "init": init,
        "activation": activation,
        "gain": _DEFAULT_GAINS[activation] if gain is None else float(gain),
        "bias_std": _DEFAULT_BIAS_STDS[activation] if bias_std is None else float(bias_std),
        "batch": batch,
        "seed": seed,
        "input_std": float(input_std),
    }
