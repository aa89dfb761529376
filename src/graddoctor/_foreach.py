r"""The one (device, dtype) grouper and the fused per-tensor reductions built on it.

``group_by_device_and_dtype`` splits tensors for the ``torch._foreach_*`` kernels (the
probes' norms and the clipping remedies both use it). Every reduction returns a 1-D
tensor on the first tensor's device, one entry per input tensor, without any host
synchronisation: float32, or float64 when a tensor is float64 or complex128. Complex
tensors are measured by their magnitudes (:math:`\lVert z \rVert_2 = (\sum |z_j|^2)^{1/2}`,
``max |z_j|``), as ``torch.linalg.vector_norm`` does.

The fast L2 norms square in the accumulation dtype: finite float32 entries above ~1e19
overflow to inf, entries below ~1e-19 underflow to 0. :func:`norms_in_range` says, on
the device, which fast norms are exact; :func:`exact_norms` recomputes the others from
the max (:math:`m \lVert x / m \rVert_2` in float64), for the callers that already read
a flag on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

_HAS_FOREACH_NORM = hasattr(torch, "_foreach_norm")
# half-precision tensors are reduced in float32: an fp16 sum of squares overflows at a
# norm of 65504 and a bf16 result keeps 3 significant digits
LOW_PRECISION = (torch.float16, torch.bfloat16)


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """The stored values of a tensor (sparse gradients reduce over their values)."""
    if tensor.is_sparse:
        return tensor.coalesce().values()
    if tensor.layout != torch.strided:
        return tensor.to_dense()
    return tensor


def result_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """float64 when any tensor is float64 or complex128 (its norms may not fit float32), else float32."""
    wide = (torch.float64, torch.complex128)
    return torch.float64 if any(t.dtype in wide for t in tensors) else torch.float32


# devices with fused multi-tensor (foreach) kernels; anything else uses a plain loop
_FOREACH_DEVICE_TYPES = frozenset({"cpu", "cuda", "xpu"})


class TensorGroup(NamedTuple):
    """Tensors sharing a device and dtype, their positions in the input, and the kernel choice."""

    device: torch.device
    tensors: list[torch.Tensor]
    indices: list[int]
    foreach: bool


def group_by_device_and_dtype(
    tensors: Sequence[torch.Tensor], foreach: bool | None = None
) -> list[TensorGroup]:
    """Split ``tensors`` by (device, dtype), in first-seen order, deciding foreach once per group.

    Args:
        tensors: the tensors to group.
        foreach: ``None`` uses the foreach kernels where supported (plain strided tensors on
            a device that has them), ``True`` insists, ``False`` uses a plain loop.

    Raises:
        RuntimeError: ``foreach=True`` on a device without foreach kernels.
    """
    by_key: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[int]]] = {}
    for index, tensor in enumerate(tensors):
        members, indices = by_key.setdefault((tensor.device, tensor.dtype), ([], []))
        members.append(tensor)
        indices.append(index)
    return [
        TensorGroup(device, members, indices, _use_foreach(members, device, foreach))
        for (device, _), (members, indices) in by_key.items()
    ]


def _use_foreach(tensors: list[torch.Tensor], device: torch.device, foreach: bool | None) -> bool:
    device_ok = device.type in _FOREACH_DEVICE_TYPES and not torch.jit.is_scripting()
    if foreach is None:
        # tensor subclasses (e.g. DTensor) go through the plain loop, as in torch
        return device_ok and all(type(t) is torch.Tensor for t in tensors)
    if foreach and not device_ok:
        raise RuntimeError(
            f"foreach=True was passed, but there are no foreach kernels for {device.type} "
            "tensors: pass foreach=None to fall back to a plain loop"
        )
    return bool(foreach)


def norms(
    tensors: Sequence[torch.Tensor], ord: float = 2.0, device: torch.device | None = None
) -> torch.Tensor:
    r"""Per-tensor vector norms.

    .. math:: n_i = \lVert \mathrm{vec}(T_i) \rVert_{p}

    ``ord=inf`` gives ``max |T_i|``. Empty tensors give 0. Half-precision tensors
    (fp16, bf16) are accumulated in float32, complex ones by magnitude. Fast: finite
    entries can still overflow or underflow (see :func:`norms_in_range`).

    Args:
        tensors: the tensors (dense or sparse).
        ord: the norm order (2, 1, inf...).
        device: where the result lives (default: the first tensor's device).

    Returns:
        tensor ``[len(tensors)]`` of :func:`result_dtype`.
    """
    dtype = result_dtype(tensors)
    if not tensors:
        return torch.zeros(0, dtype=dtype, device=device)
    device = tensors[0].device if device is None else device
    dense = [_dense(t) for t in tensors]
    groups = group_by_device_and_dtype(dense)
    out = None if len(groups) == 1 else torch.empty(len(dense), dtype=dtype, device=device)
    for group in groups:
        values = _same_kind_norms(group.tensors, ord)
        stacked = torch.stack([v.to(dtype) for v in values]).to(device)
        if out is None:
            return stacked
        out[torch.tensor(group.indices, device=device)] = stacked
    return out


def _same_kind_norms(members: list[torch.Tensor], ord: float) -> list[torch.Tensor]:
    # one fused kernel over the non-empty tensors of one (device, dtype) group; empty
    # tensors (e.g. a parameter held by another rank's FSDP shard) give 0
    filled = [i for i, m in enumerate(members) if m.numel() > 0]
    values = [torch.zeros((), dtype=torch.float32, device=m.device) for m in members]
    if _HAS_FOREACH_NORM and filled:
        chosen = [members[i] for i in filled]
        try:
            if chosen[0].dtype in LOW_PRECISION:
                fused = torch._foreach_norm(chosen, ord, dtype=torch.float32)
            else:
                fused = torch._foreach_norm(chosen, ord)
        except (RuntimeError, NotImplementedError):
            fused = [_plain_norm(m, ord) for m in chosen]
        for i, value in zip(filled, fused, strict=True):
            values[i] = value
        return values
    return [_plain_norm(m, ord) for m in members]


def _plain_norm(tensor: torch.Tensor, ord: float) -> torch.Tensor:
    if tensor.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=tensor.device)
    if math.isinf(ord):
        return tensor.detach().abs().max()
    if tensor.dtype in LOW_PRECISION:
        return torch.linalg.vector_norm(tensor.detach(), ord, dtype=torch.float32)
    return torch.linalg.vector_norm(tensor.detach(), ord)


def max_abs(tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    r"""Per-tensor ``max |T_i|`` from one ``aminmax`` pass each (no temporary ``|T|``).

    NaN anywhere in a tensor gives NaN. Empty tensors give 0. On CPU this is an order of
    magnitude faster than ``torch._foreach_norm(tensors, inf)``. Complex tensors give
    their largest magnitude (through a temporary ``|T|``: ``aminmax`` has no complex kernel).

    Returns:
        tensor ``[len(tensors)]`` of :func:`result_dtype`.
    """
    dtype = result_dtype(tensors)
    if not tensors:
        return torch.zeros(0, dtype=dtype, device=device)
    device = tensors[0].device if device is None else device
    values = []
    for tensor in tensors:
        dense = _dense(tensor).detach()
        if dense.numel() == 0:
            values.append(torch.zeros((), dtype=dtype, device=dense.device))
            continue
        if dense.is_complex():
            values.append(dense.abs().amax().to(dtype))  # amax propagates NaN
            continue
        low, high = torch.aminmax(dense)
        biggest = torch.maximum(low.neg(), high).to(dtype)
        values.append(torch.where(torch.isnan(low) | torch.isnan(high), low.to(dtype), biggest))
    return torch.stack([v.to(device) for v in values])


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


def nonfinite_counts(
    tensors: Sequence[torch.Tensor], device: torch.device | None = None
) -> torch.Tensor:
    """Per-tensor count of NaN and +-Inf entries (complex: either part), float32 ``[len(tensors)]``."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float32, device=device)
    device = tensors[0].device if device is None else device
    counts = [torch.isfinite(_dense(t)).logical_not().sum() for t in tensors]
    return torch.stack([c.to(device=device, dtype=torch.float32) for c in counts])


def differences_norms(
    after: Sequence[torch.Tensor],
    before: Sequence[torch.Tensor],
    device: torch.device | None = None,
) -> torch.Tensor:
    r"""Per-tensor ``\lVert a_i - b_i \rVert_2`` without keeping the differences.

    The fused path subtracts in place into ``before`` (which is a scratch copy owned
    by the caller) and takes the foreach norm of the result.
    """
    if not after:
        return torch.zeros(0, dtype=torch.float32, device=device)
    scratch = list(before)
    try:
        torch._foreach_sub_(scratch, list(after))
    except (RuntimeError, NotImplementedError, AttributeError):
        for a, b in zip(after, scratch, strict=True):
            b.sub_(a)
    return norms(scratch, 2.0, device=device)
