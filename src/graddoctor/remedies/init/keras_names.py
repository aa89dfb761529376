r"""Keras' initializer names, with Keras' statistics (re-exported by ``graddoctor.init``).

Keras names its variance-scaling initialisers ``he_normal``, ``glorot_uniform``... like
graddoctor's schemes, but its ``*_normal`` draw from a *truncated* normal (to
:math:`[-2s, 2s]`, :math:`s` scaled so the variance after truncation is the target one),
where ``torch.nn.init`` and graddoctor's ``he_normal_`` draw a plain normal. This module
gives the Keras meaning to those names:

=================  =======  =========  ==================
name               scale    mode       distribution
=================  =======  =========  ==================
``he_normal``      2        fan_in     truncated normal
``he_uniform``     2        fan_in     uniform
``glorot_normal``  1        fan_avg    truncated normal
``glorot_uniform`` 1        fan_avg    uniform
``lecun_normal``   1        fan_in     truncated normal
``lecun_uniform``  1        fan_in     uniform
=================  =======  =========  ==================

and :class:`VarianceScaling` is ``keras.initializers.VarianceScaling(scale, mode,
distribution)``, where ``"normal"`` means truncated and ``"untruncated_normal"`` plain.
Fans follow the tensor's layout: a Keras kernel is ``(*kernel_size, in, out)``
(``layout="keras"``), a torch weight ``(out, in, *kernel_size)`` (``layout="torch"``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from graddoctor.remedies.init.schemes import check_float_tensor, variance_scaling_

KERAS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")
LAYOUTS = ("keras", "torch")


@dataclass(frozen=True)
class VarianceScaling:
    r"""Keras' ``VarianceScaling(scale, mode, distribution)``: variance :math:`\text{scale} / n`.

    Attributes:
        scale: positive multiplier of the variance.
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"`` (also spelled ``"normal"``, as in Keras),
            ``"untruncated_normal"`` or ``"uniform"``.
    """

    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"

    def __post_init__(self) -> None:
        if not (
            isinstance(self.scale, numbers.Real) and math.isfinite(self.scale) and self.scale > 0
        ):
            raise ValueError(f"scale must be a positive finite number, got {self.scale!r}")
        if self.mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {self.mode!r}")
        if self.distribution not in KERAS_DISTRIBUTIONS:
            raise ValueError(
                f"distribution must be one of {KERAS_DISTRIBUTIONS}, got {self.distribution!r}"
            )

    @property
    def torch_distribution(self) -> str:
        """The same distribution in :func:`variance_scaling_`'s words."""
        return {"untruncated_normal": "normal", "uniform": "uniform"}.get(
            self.distribution, "truncated_normal"
        )


KERAS_INITIALIZERS: dict[str, VarianceScaling] = {
    "he_normal": VarianceScaling(2.0, "fan_in", "truncated_normal"),
    "he_uniform": VarianceScaling(2.0, "fan_in", "uniform"),
    "glorot_normal": VarianceScaling(1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": VarianceScaling(1.0, "fan_avg", "uniform"),
    "lecun_normal": VarianceScaling(1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": VarianceScaling(1.0, "fan_in", "uniform"),
}


def keras_initializer(initializer: str | VarianceScaling) -> VarianceScaling:
    """The :class:`VarianceScaling` of a Keras initializer name (a ``VarianceScaling`` as it is).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if isinstance(initializer, VarianceScaling):
        return initializer
    if initializer not in KERAS_INITIALIZERS:
        raise ValueError(
            f"unknown Keras initializer {initializer!r}; known: {', '.join(KERAS_INITIALIZERS)}"
        )
    return KERAS_INITIALIZERS[initializer]


def keras_init_(
    tensor: torch.Tensor,
    initializer: str | VarianceScaling,
    layout: str = "keras",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Fill ``tensor`` in place as Keras' initializer of that name would (same distribution).

    .. math::
        \sigma^2 = \frac{\text{scale}}{n}, \quad \text{truncated normal: }
        \mathcal N(0, s^2) \text{ on } [-2s, 2s], \ s = \sigma / 0.8796; \quad
        \text{uniform: } \mathcal U(-\sqrt{3}\sigma, \sqrt{3}\sigma)

    He et al. (2015), "Delving Deep into Rectifiers"; Glorot & Bengio (2010); LeCun et al.
    (1998), "Efficient BackProp".

    Args:
        tensor: a weight with at least 2 dimensions.
        initializer: a name of :data:`KERAS_INITIALIZERS` or a :class:`VarianceScaling`.
        layout: ``"keras"`` (``(*kernel_size, in, out)``, e.g. a Keras Dense kernel
            ``(in, out)``) or ``"torch"`` (``(out, in, *kernel_size)``).
        generator: optional ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.
    """
    spec = keras_initializer(initializer)
    check_float_tensor(tensor)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if tensor.dim() < 2:
        raise ValueError(
            f"a Keras variance-scaling fill needs a weight of 2+ dimensions, got shape {tuple(tensor.shape)}"
        )
    view = tensor
    if layout == "keras":  # (*k, in, out) -> (out, in, *k): the same entries, torch's fans
        view = tensor.permute(-1, -2, *range(tensor.dim() - 2))
    variance_scaling_(view, spec.scale, spec.mode, spec.torch_distribution, generator)
    return tensor


__all__ = ["KERAS_INITIALIZERS", "VarianceScaling", "keras_init_", "keras_initializer"]
