r"""Variance-scaling initialisers (re-exported by ``graddoctor.init``).

Every function fills its tensor in place under ``torch.no_grad`` and returns it; the
optional ``generator`` must live on the tensor's device. The ``*_normal_`` schemes draw
from a plain (untruncated) normal distribution, as ``torch.nn.init`` does, so
``he_normal_`` equals ``torch.nn.init.kaiming_normal_`` and ``glorot_normal_`` equals
``torch.nn.init.xavier_normal_`` for the same generator state. (Keras's ``he_normal`` and
``glorot_normal`` are truncated: use ``variance_scaling_(..., distribution="truncated_normal")``
for those.)
"""

from __future__ import annotations

import math
import numbers

import torch

FAN_MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# Standard deviation of a standard normal truncated to [-2, 2] (Keras's constant):
# dividing the pre-truncation std by it makes the truncated variance the target one.
TRUNCATED_NORMAL_STD = 0.87962566103423978
_SQRT2 = math.sqrt(2.0)


def fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    r"""Fan-in and fan-out of a Linear or ConvNd weight, as ``torch.nn.init`` computes them.

    .. math::
        \text{fan\_in} = \text{shape}[1] \cdot r, \qquad
        \text{fan\_out} = \text{shape}[0] \cdot r, \qquad r = \prod_{k \ge 2} \text{shape}[k]

    Args:
        tensor: a weight of shape ``(out_features, in_features, *kernel_size)``.

    Returns:
        ``(fan_in, fan_out)``.
    """
    if tensor.dim() < 2:
        raise ValueError(
            f"fan-in and fan-out need a weight with at least 2 dimensions (out, in, *kernel), "
            f"got shape {tuple(tensor.shape)}; initialise biases and other 1-D tensors with zeros"
        )
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def check_float_tensor(tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor to initialise, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"can only initialise floating-point tensors, got dtype {tensor.dtype}")


def _fill_truncated_normal_(
    tensor: torch.Tensor, std: float, generator: torch.Generator | None
) -> None:
    # inverse-CDF sampling of N(0, 1) restricted to [-2, 2]: u ~ U(Phi(-2), Phi(2)),
    # x = sqrt(2) erfinv(2u - 1); exact, no rejection loop, one uniform draw per entry
    low = 0.5 * (1.0 + math.erf(-2.0 / _SQRT2))
    high = 0.5 * (1.0 + math.erf(2.0 / _SQRT2))
    work_dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    sample = torch.empty(tensor.shape, dtype=work_dtype, device=tensor.device)
    sample.uniform_(2.0 * low - 1.0, 2.0 * high - 1.0, generator=generator)
    sample.erfinv_().mul_(_SQRT2).clamp_(-2.0, 2.0).mul_(std)
    tensor.copy_(sample)


def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "normal",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` with zero-mean values of variance ``scale / n`` (Keras's VarianceScaling).

    .. math::
        \sigma^2 = \frac{\text{scale}}{n}, \qquad
        n \in \{\text{fan\_in}, \text{fan\_out}, (\text{fan\_in} + \text{fan\_out}) / 2\}

    ``"normal"`` draws :math:`\mathcal{N}(0, \sigma^2)`; ``"truncated_normal"`` draws
    :math:`\mathcal{N}(0, s^2)` truncated to :math:`[-2s, 2s]` with
    :math:`s = \sigma / 0.87962566103423978`, so the variance after truncation is
    :math:`\sigma^2`; ``"uniform"`` draws :math:`\mathcal{U}(-\ell, \ell)` with
    :math:`\ell = \sqrt{3 \sigma^2}`. Glorot & Bengio (2010), "Understanding the difficulty of
    training deep feedforward neural networks"; He et al. (2015), "Delving Deep into
    Rectifiers"; LeCun et al. (1998), "Efficient BackProp".

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        scale: positive multiplier of the variance (2.0 for He, 1.0 for Glorot/LeCun).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        generator: optional ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.
    """
    check_float_tensor(tensor)
    if not (isinstance(scale, numbers.Real) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if mode not in FAN_MODES:
        raise ValueError(f"mode must be one of {FAN_MODES}, got {mode!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    if fan == 0:
        return tensor  # an empty weight: nothing to fill
    variance = scale / fan
    with torch.no_grad():
        if distribution == "normal":
            tensor.normal_(0.0, math.sqrt(variance), generator=generator)
        elif distribution == "truncated_normal":
            _fill_truncated_normal_(tensor, math.sqrt(variance) / TRUNCATED_NORMAL_STD, generator)
        else:
            limit = math.sqrt(3.0 * variance)
            tensor.uniform_(-limit, limit, generator=generator)
    return tensor


def glorot_normal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Glorot/Xavier normal: :math:`\mathcal{N}(0, \text{gain}^2 / \text{fan\_avg})`.

    Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward
    neural networks". Plain normal; equals ``torch.nn.init.xavier_normal_``.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        gain: multiplier of the standard deviation.
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _gain_to_scale(gain), "fan_avg", "normal", generator)


def glorot_uniform_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Glorot/Xavier uniform: :math:`\mathcal{U}(-\ell, \ell)`, :math:`\ell = \text{gain}\sqrt{3 / \text{fan\_avg}}`.

    Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward
    neural networks". Equals ``torch.nn.init.xavier_uniform_``.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        gain: multiplier of the standard deviation.
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _gain_to_scale(gain), "fan_avg", "uniform", generator)


def he_normal_(
    tensor: torch.Tensor, negative_slope: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""He/Kaiming normal for (leaky) ReLU: :math:`\mathcal{N}(0, \frac{2}{(1 + a^2)\,\text{fan\_in}})`.

    He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers". Plain normal; equals
    ``torch.nn.init.kaiming_normal_(tensor, a=negative_slope)``.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        negative_slope: the slope :math:`a` of the LeakyReLU that follows (0 for ReLU).
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _leaky_scale(negative_slope), "fan_in", "normal", generator)


def he_uniform_(
    tensor: torch.Tensor, negative_slope: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""He/Kaiming uniform: :math:`\mathcal{U}(-\ell, \ell)`, :math:`\ell = \sqrt{\frac{6}{(1 + a^2)\,\text{fan\_in}}}`.

    He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers". Equals
    ``torch.nn.init.kaiming_uniform_(tensor, a=negative_slope)``.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        negative_slope: the slope :math:`a` of the LeakyReLU that follows (0 for ReLU).
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _leaky_scale(negative_slope), "fan_in", "uniform", generator)


def lecun_normal_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""LeCun normal, the init for SELU: :math:`\mathcal{N}(0, \text{gain}^2 / \text{fan\_in})`.

    LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp"; Klambauer et al. (2017),
    "Self-Normalizing Neural Networks". Plain normal.

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        gain: multiplier of the standard deviation.
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _gain_to_scale(gain), "fan_in", "normal", generator)


def lecun_uniform_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""LeCun uniform: :math:`\mathcal{U}(-\ell, \ell)`, :math:`\ell = \text{gain}\sqrt{3 / \text{fan\_in}}`.

    LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp".

    Args:
        tensor: a weight with at least 2 dimensions, filled in place.
        gain: multiplier of the standard deviation.
        generator: optional ``torch.Generator``.

    Returns:
        ``tensor``.
    """
    return variance_scaling_(tensor, _gain_to_scale(gain), "fan_in", "uniform", generator)


def _gain_to_scale(gain: float) -> float:
    if not (isinstance(gain, numbers.Real) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive finite number, got {gain!r}")
    return float(gain) ** 2


def _leaky_scale(negative_slope: float) -> float:
    if not (isinstance(negative_slope, numbers.Real) and math.isfinite(negative_slope)):
        raise ValueError(f"negative_slope must be a finite number, got {negative_slope!r}")
    return 2.0 / (1.0 + float(negative_slope) ** 2)
