r"""Gradient clipping by value, under ``torch.nn.utils``'s name (re-exported by ``graddoctor.clip``)."""

from __future__ import annotations

import torch

from graddoctor._foreach import group_by_device_and_dtype
from graddoctor.monitor.clip_watch import watched_clip  # an open Monitor reads before the clip
from graddoctor.remedies.clip._gather import Tensors, as_tensor_list, check_positive, grads_of


@watched_clip("value")
@torch.no_grad()
def clip_grad_value_(parameters: Tensors, clip_value: float, foreach: bool | None = None) -> None:
    r"""Clamp every gradient entry to :math:`[-\text{clip\_value}, \text{clip\_value}]` in place.

    .. math::
        g_j \leftarrow \max(-\text{clip\_value}, \min(g_j, \text{clip\_value}))

    Mikolov (2012), "Statistical Language Models Based on Neural Networks" (the
    element-wise clipping Pascanu et al. 2013 compare against). Changes the gradient's
    direction; ``clip_grad_norm_`` keeps it. Same signature and result as
    ``torch.nn.utils.clip_grad_value_``.

    Args:
        parameters: parameters whose ``.grad`` is clamped (those without one are skipped);
            a tensor or any iterable, generators included.
        clip_value: the positive bound.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
    """
    clip_value = check_positive("value", clip_value)
    grads = grads_of(as_tensor_list(parameters))
    for group in group_by_device_and_dtype(grads, foreach):
        if group.foreach:
            torch._foreach_clamp_min_(group.tensors, -clip_value)
            torch._foreach_clamp_max_(group.tensors, clip_value)
        else:
            for grad in group.tensors:
                grad.clamp_(min=-clip_value, max=clip_value)


def clip_value_(params: Tensors, value: float, foreach: bool | None = None) -> None:
    """:func:`clip_grad_value_` under its graddoctor 0.x name (kept for one release)."""
    clip_grad_value_(params, value, foreach)
