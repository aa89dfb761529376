r"""Norms exact across the float range: which fast norms to trust, and the exact recompute.

The fused L2 norms of :mod:`graddoctor._foreach` square in the accumulation dtype: finite
float32 entries above ~1e19 overflow to inf, entries below ~1e-19 underflow to 0.
:func:`norms_in_range` says, on the device, which fast norms are exact; :func:`exact_norms`
recomputes the others from the max (:math:`m \lVert x / m \rVert_2` in float64), for the
callers that already read a flag on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._foreach import _dense, result_dtype

# The fast L2 norm is exact (to ~1e-7) when the mean square of the entries is a normal
# number, with margin, in the accumulation dtype: below an RMS of 1e-16 (float32) the
# squares are subnormal, or flushed to zero by the kernel, and precision is lost.
_EXACT_RMS_FLOOR = {torch.float32: 1e-16, torch.float64: 1e-150}


def norm_floors(
    tensors: Sequence[torch.Tensor], device: torch.device | None = None
) -> torch.Tensor:
    r"""Per tensor, the smallest L2 norm :func:`norms` computes exactly: :math:`\sqrt{n_i}\, r`.

    :math:`r` is 1e-16 for tensors accumulated in float32 (fp16, bf16, float32,
    complex64) and 1e-150 for float64 and complex128. Depends on shapes and dtypes only:
    callers with fixed parameters compute it once.

    Returns:
        tensor ``[len(tensors)]`` of :func:`result_dtype`.
    """
    wide = (torch.float64, torch.complex128)
    values = [
        math.sqrt(max(t.numel(), 1))
        * _EXACT_RMS_FLOOR[torch.float64 if t.dtype in wide else torch.float32]
        for t in tensors
    ]
    return torch.tensor(values, dtype=result_dtype(tensors), device=device)


def norms_in_range(
    l2_norms: torch.Tensor, maxima: torch.Tensor, floors: torch.Tensor
) -> torch.Tensor:
    """Which fast L2 norms are exact, on the device (no sync): finite and at least
    ``floors`` (:func:`norm_floors`), or 0 from an all-zero tensor.

    A norm out of range comes from a non-finite entry (``maxima`` is then inf or NaN) or
    from finite entries whose squares overflowed or underflowed (:func:`exact_norms`).
    """
    return torch.isfinite(l2_norms) & ((l2_norms >= floors) | (maxima == 0))


def exact_norms(
    tensors: Sequence[torch.Tensor],
    l2_norms: torch.Tensor,
    maxima: torch.Tensor,
    redo: torch.Tensor,
) -> torch.Tensor:
    r"""``l2_norms`` (as float64) with the entries flagged in ``redo`` recomputed exactly.

    .. math:: \lVert x \rVert_2 = m \, \lVert x / m \rVert_2, \qquad m = \max_j |x_j|,

    in float64, so no square overflows or underflows. Reads ``redo`` on the host (a
    sync): call it only after a host check found a norm out of range.

    Args:
        tensors: the measured tensors.
        l2_norms: their fast norms (:func:`norms`).
        maxima: their ``max |x|`` (:func:`max_abs`).
        redo: boolean ``[len(tensors)]``: the entries to recompute (finite maxima only).

    Returns:
        float64 tensor ``[len(tensors)]`` on ``l2_norms``' device.
    """
    out = l2_norms.to(torch.float64)  # a copy for float32 inputs
    if out is l2_norms:
        out = out.clone()
    for index in redo.nonzero().flatten().tolist():
        dense = _dense(tensors[index]).detach()
        wide = dense.to(torch.complex128 if dense.is_complex() else torch.float64)
        largest = maxima[index].to(device=dense.device, dtype=torch.float64)
        scaled = torch.linalg.vector_norm(wide / largest) * largest
        out[index] = torch.where(largest > 0, scaled, torch.zeros_like(scaled)).to(out.device)
    return out
