r"""Gradient clipping remedies for exploding gradients.

By value (``clip_value_``, or ``clip_during_backward`` while backpropagation runs), by
norm (``clip_norm_``, Pascanu, Mikolov & Bengio 2013, with its measuring twin
``total_norm``), unit-wise relative to the weights (``adaptive_clip_``, Brock et al. 2021)
and to a running percentile of past norms (``QuantileClipper``, Seetharaman et al. 2020).
All act in place on ``.grad``, after ``backward()`` and before ``optimizer.step()``; under
AMP unscale the gradients first (``scaler.unscale_(optimizer)``).
"""

from graddoctor.remedies._clip_agc import adaptive_clip_, unitwise_norm, unitwise_ratios
from graddoctor.remedies._clip_autoclip import QuantileClipper
from graddoctor.remedies._clip_backward import BackwardClipHandle, clip_during_backward
from graddoctor.remedies._clip_norm import (
    NONFINITE_POLICIES,
    clip_grads_with_norm_,
    clip_norm_,
    clip_value_,
    total_norm,
)

__all__ = [
    "NONFINITE_POLICIES",
    "BackwardClipHandle",
    "QuantileClipper",
    "adaptive_clip_",
    "clip_during_backward",
    "clip_grads_with_norm_",
    "clip_norm_",
    "clip_value_",
    "total_norm",
    "unitwise_norm",
    "unitwise_ratios",
]
