"""``graddoctor.clip``: gradient clipping, under ``torch.nn.utils``'s names.

``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm`` and ``clip_grads_with_norm_``
take torch's arguments and give its results; ``clip_norm_``, ``clip_value_`` and
``total_norm`` are graddoctor 0.x's names, kept for one release. See
:mod:`graddoctor.remedies.clip`.
"""

from graddoctor.remedies.clip import (
    NONFINITE_POLICIES,
    BackwardClipHandle,
    QuantileClipper,
    adaptive_clip_,
    clip_during_backward,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    clip_norm_,
    clip_value_,
    get_total_norm,
    total_norm,
    unitwise_norm,
    unitwise_ratios,
)

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
