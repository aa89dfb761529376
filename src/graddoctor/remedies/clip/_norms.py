"""Per-tensor norms and in-place scaling over (device, dtype) groups, for the norm clippers.

The foreach kernels handle a group at once where available, a plain loop elsewhere; no
function here reads a tensor on the host.
"""

from __future__ import annotations

import torch

from graddoctor._foreach import LOW_PRECISION, TensorGroup

NONFINITE_POLICIES = ("raise", "skip", "zero", "propagate")
DEFAULT_EPS = 1e-6


def group_norms(groups: list[TensorGroup], norm_type: float) -> list[list[torch.Tensor]]:
    """One 0-dim norm per tensor, group by group; half-precision groups accumulate in float32.

    An fp16 norm overflows at 65504 while its entries are finite (1000 entries of 3000
    give 94868): the norms of fp16 and bf16 tensors are float32, as the Monitor's.
    """
    out = []
    for group in groups:
        dtype = torch.float32 if group.tensors[0].dtype in LOW_PRECISION else None
        if group.foreach:
            out.append(list(torch._foreach_norm(group.tensors, norm_type, dtype=dtype)))
        else:
            out.append([torch.linalg.vector_norm(t, norm_type, dtype=dtype) for t in group.tensors])
    return out


def combine(
    norms: list[list[torch.Tensor]], device: torch.device, norm_type: float
) -> torch.Tensor:
    """The norm of the per-tensor norms, stacked in group order as torch does."""
    return torch.linalg.vector_norm(
        torch.stack([n.to(device) for group in norms for n in group]), norm_type
    )


def clip_coefficient(max_norm: float, norm: torch.Tensor, eps: float) -> torch.Tensor:
    r""":math:`\min(\text{max\_norm} / (\text{norm} + \epsilon), 1)`, clamped on the device."""
    return torch.clamp(max_norm / (norm + eps), max=1.0)


def scale_(groups: list[TensorGroup], coefficient: torch.Tensor) -> None:
    """Multiply every tensor of ``groups`` by the 0-dim ``coefficient``, in place."""
    for group in groups:
        coefficient_on_device = coefficient.to(group.device)
        if group.foreach:
            torch._foreach_mul_(group.tensors, coefficient_on_device)
        else:
            for grad in group.tensors:
                grad.mul_(coefficient_on_device)


def scale_each_(
    groups: list[TensorGroup], norms: list[list[torch.Tensor]], max_norm: float, eps: float
) -> None:
    """Clip each tensor of ``groups`` to its own norm (given in ``norms``), in place."""
    for group, group_norms_ in zip(groups, norms):
        coefficients = clip_coefficient(max_norm, torch.stack(group_norms_), eps).unbind()
        if group.foreach:
            torch._foreach_mul_(group.tensors, list(coefficients))
        else:
            for grad, coefficient in zip(group.tensors, coefficients):
                grad.mul_(coefficient)


def raise_nonfinite(norm_type: float, per_layer: bool) -> None:
    """The ``RuntimeError`` for a non-finite norm, naming the ways out."""
    which = "a per-tensor gradient norm" if per_layer else "the total gradient norm"
    raise RuntimeError(
        f"{which} of order {norm_type} is non-finite (nan or inf), so it cannot be clipped; "
        "find where it comes from (graddoctor's non-finite probe), or pass nonfinite='skip' "
        "to skip this step, 'zero' to zero the non-finite entries, or 'propagate' to scale anyway"
    )
