r"""Adaptive gradient clipping (AGC): Brock, De, Smith & Simonyan (2021).

"High-Performance Large-Scale Image Recognition Without Normalization" clips each unit's
gradient relative to the norm of that unit's weights, so the update
:math:`\|\Delta W_i\| / \|W_i\|` stays bounded whatever the scale of the layer.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch
from torch import nn

from graddoctor._foreach import LOW_PRECISION
from graddoctor._module_types import is_weight_layer
from graddoctor.remedies.clip._gather import as_tensor_list

# the NFNet reference code's floor on the gradient norm before dividing by it
_GRAD_NORM_FLOOR = 1e-6


def unitwise_norm(tensor: torch.Tensor) -> torch.Tensor:
    r"""The Frobenius norm of each unit of a weight (or of its gradient).

    A unit is one slice along the first dimension: a row of a Linear weight (an output
    unit), one output channel :math:`(C_{in}, k_h, k_w)` of a conv kernel. Scalars and
    vectors (biases, norm gains) are one unit as a whole, as in the NFNet reference code.

    Args:
        tensor: a parameter or gradient.

    Returns:
        norms of shape ``(out, 1, ..., 1)`` for tensors with 2+ dimensions, a 0-dim norm
        otherwise; float32 for half-precision inputs.
    """
    dtype = torch.float32 if tensor.dtype in LOW_PRECISION else None
    if tensor.dim() <= 1:
        return torch.linalg.vector_norm(tensor, dtype=dtype)
    return torch.linalg.vector_norm(
        tensor, dim=tuple(range(1, tensor.dim())), keepdim=True, dtype=dtype
    )


@torch.no_grad()
def unitwise_ratios(
    params: torch.Tensor | Iterable[torch.Tensor], eps: float = 1e-3
) -> list[torch.Tensor]:
    r"""Per-unit gradient-to-weight norm ratios, the quantity AGC bounds (its measuring twin).

    .. math::
        r_i = \frac{\|G_i\|_F}{\max(\|W_i\|_F, \epsilon)}

    Args:
        params: parameters with gradients (those without one are skipped).
        eps: the floor :math:`\epsilon` on the weight norm (so zero-initialised weights can move).

    Returns:
        one tensor of ratios per parameter with a gradient, shaped as ``unitwise_norm``.
    """
    return [
        unitwise_norm(p.grad) / unitwise_norm(p).clamp_min(eps)
        for p in as_tensor_list(params)
        if p.grad is not None
    ]


@torch.no_grad()
def adaptive_clip_(
    params: torch.Tensor | Iterable[torch.Tensor], clip_factor: float = 0.01, eps: float = 1e-3
) -> None:
    r"""Clip each unit's gradient to ``clip_factor`` times its weight norm, in place.

    Brock, De, Smith & Simonyan (2021), "High-Performance Large-Scale Image Recognition
    Without Normalization", Sec. 4.1: for every unit :math:`i` (see ``unitwise_norm``)

    .. math::
        G_i \leftarrow
        \begin{cases}
            \lambda \dfrac{\max(\|W_i\|_F, \epsilon)}{\|G_i\|_F} G_i
                & \text{if } \dfrac{\|G_i\|_F}{\max(\|W_i\|_F, \epsilon)} > \lambda, \\
            G_i & \text{otherwise.}
        \end{cases}

    Units under the bound are multiplied by exactly 1. The choice is made on the device
    (``torch.where``), with no host synchronisation. The paper does not clip the final
    classifier layer: leave its parameters out of ``params`` (see :func:`final_layer`;
    the ``clip_adaptive`` remedy does so by default).

    Args:
        params: parameters whose ``.grad`` is clipped (those without one are skipped).
        clip_factor: :math:`\lambda`; the paper uses 0.01-0.16 depending on batch size.
        eps: :math:`\epsilon`, the floor on the weight norm (``1e-3`` in the paper).
    """
    if not isinstance(clip_factor, numbers.Real) or not clip_factor > 0:
        raise ValueError(f"clip_factor must be a positive number, got {clip_factor!r}")
    if not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    for param in as_tensor_list(params):
        grad = param.grad
        if grad is None:
            continue
        max_norm = unitwise_norm(param).clamp_min(eps).mul_(clip_factor)
        grad_norm = unitwise_norm(grad)
        scale = torch.where(
            grad_norm > max_norm,
            max_norm / grad_norm.clamp_min(_GRAD_NORM_FLOOR),
            torch.ones((), dtype=grad_norm.dtype, device=grad_norm.device),
        )
        grad.mul_(scale)


def final_layer(model: nn.Module) -> nn.Module | None:
    """The model's final weight layer: the last one registered that has trainable parameters.

    AGC leaves this layer (usually the classifier head) unclipped (Brock et al. 2021,
    Sec. 4.1). Weight layers are those of :func:`graddoctor._modules.is_weight_layer`
    (linear, convolutional, recurrent, attention); registration order stands for
    execution order, as in the NFNet and timm reference code.

    Args:
        model: the model.

    Returns:
        the module, or None when the model has no trainable weight layer.
    """
    found = None
    for module in model.modules():
        own = module.parameters(recurse=False)
        if is_weight_layer(module) and any(p.requires_grad for p in own):
            found = module
    return found
