r"""Gradient clipping remedies for exploding gradients (``graddoctor.clip`` re-exports this).

By value (:func:`clip_grad_value_`, or :func:`clip_during_backward` while backpropagation
runs), by norm (:func:`clip_grad_norm_`, Pascanu, Mikolov & Bengio 2013, with its
measuring twin :func:`get_total_norm` and acting twin :func:`clip_grads_with_norm_`),
unit-wise relative to the weights (:func:`adaptive_clip_`, Brock et al. 2021) and to a
running percentile of past norms (:class:`QuantileClipper`, Seetharaman et al. 2020).
All act in place on ``.grad``, after ``backward()`` and before ``optimizer.step()``; under
AMP unscale the gradients first (``scaler.unscale_(optimizer)``).

``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm`` and ``clip_grads_with_norm_``
take ``torch.nn.utils``'s arguments and give its results. ``clip_norm_``, ``clip_value_``
and ``total_norm`` are the names of graddoctor 0.x, kept for one release.
"""

from graddoctor.remedies.clip._norms import NONFINITE_POLICIES
from graddoctor.remedies.clip.adaptive import adaptive_clip_, unitwise_norm, unitwise_ratios
from graddoctor.remedies.clip.backward import BackwardClipHandle, clip_during_backward
from graddoctor.remedies.clip.norm import (
    clip_grad_norm_,
    clip_grads_with_norm_,
    clip_norm_,
    get_total_norm,
    total_norm,
)
from graddoctor.remedies.clip.quantile import QuantileClipper
from graddoctor.remedies.clip.value import clip_grad_value_, clip_value_

__all__ = [
    "NONFINITE_POLICIES",
    "BackwardClipHandle",
    "QuantileClipper",
    "adaptive_clip_",
    "clip_during_backward",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "clip_norm_",
    "clip_value_",
    "get_total_norm",
    "total_norm",
    "unitwise_norm",
    "unitwise_ratios",
]
