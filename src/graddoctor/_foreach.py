r"""The one (device, dtype) grouper and the fused per-tensor reductions built on it.

``group_by_device_and_dtype`` splits tensors for the ``torch._foreach_*`` kernels (the
probes' norms and the clipping remedies both use it). Every reduction returns a 1-D
tensor on the first tensor's device, one entry per input tensor, without any host
synchronisation: float32, or float64 when a tensor is float64 or complex128. Complex
tensors are measured by their magnitudes (:math:`\lVert z \rVert_2 = (\sum |z_j|^2)^{1/2}`,
``max |z_j|``), as ``torch.linalg.vector_norm`` does.

Norms out of the accumulation dtype's range (squares that overflow or underflow) are
flagged and recomputed by :mod:`graddoctor._exact_norms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    return torch.float64 if any(t.dtype in _WIDE for t in tensors) else torch.float32


_WIDE = (torch.float64, torch.complex128)


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
    entries can still overflow or underflow (see :func:`norms_in_range`). One fused kernel
    per (device, dtype) group where the device has one; the cost per tensor is the
    kernel's, with no tensor created per input tensor.

    Args:
        tensors: the tensors (dense or sparse).
        ord: the norm order (2, 1, inf...).
        device: where the result lives (default: the first tensor's device).

    Returns:
        tensor ``[len(tensors)]`` of :func:`result_dtype`.
    """
    return _per_group(tensors, device, lambda members: _group_norms(members, ord))


def _per_group(
    tensors: Sequence[torch.Tensor],
    device: torch.device | None,
    reduce: Callable[[list[torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    """``reduce`` (a ``[len(members)]`` tensor per group) over each (device, dtype) group, in input order."""
    if not tensors:
        return torch.zeros(0, dtype=result_dtype(tensors), device=device)
    device = tensors[0].device if device is None else device
    kinds = {(t.device, t.dtype, t.layout) for t in tensors}  # one pass, no tensor made
    if len(kinds) == 1:
        ((_, kind, layout),) = kinds
        if layout == torch.strided:  # the usual case: one group, in order
            dtype = torch.float64 if kind in _WIDE else torch.float32
            return reduce(list(tensors)).to(device=device, dtype=dtype)
    dtype = result_dtype(tensors)
    groups = group_by_device_and_dtype([_dense(t) for t in tensors])
    out = torch.empty(len(tensors), dtype=dtype, device=device)
    for group in groups:
        values = reduce(group.tensors).to(device=device, dtype=dtype)
        out[torch.tensor(group.indices, device=device)] = values
    return out


def _with_empties(
    members: list[torch.Tensor], reduce: Callable[[list[torch.Tensor]], torch.Tensor]
) -> torch.Tensor:
    """``reduce`` over the non-empty members, 0 for the empty ones (e.g. another rank's FSDP shard)."""
    sizes = [m.numel() for m in members]
    if all(sizes):
        return reduce(members)
    filled = [i for i, size in enumerate(sizes) if size]
    out = torch.zeros(len(members), dtype=torch.float32, device=members[0].device)
    if filled:
        values = reduce([members[i] for i in filled])
        out = out.to(values.dtype)
        out[torch.tensor(filled, device=out.device)] = values
    return out


def _group_norms(members: list[torch.Tensor], ord: float) -> torch.Tensor:
    # one fused kernel over the non-empty tensors of one (device, dtype) group
    def fused(chosen: list[torch.Tensor]) -> torch.Tensor:
        if _HAS_FOREACH_NORM:
            try:
                if chosen[0].dtype in LOW_PRECISION:
                    return torch.stack(torch._foreach_norm(chosen, ord, dtype=torch.float32))
                return torch.stack(torch._foreach_norm(chosen, ord))
            except (RuntimeError, NotImplementedError):
                pass
        return torch.stack([_plain_norm(m, ord) for m in chosen])

    return _with_empties(members, fused)


def _plain_norm(tensor: torch.Tensor, ord: float) -> torch.Tensor:
    if tensor.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=tensor.device)
    if math.isinf(ord):
        return tensor.detach().abs().max()
    if tensor.dtype in LOW_PRECISION:
        return torch.linalg.vector_norm(tensor.detach(), ord, dtype=torch.float32)
    return torch.linalg.vector_norm(tensor.detach(), ord)


# On CPU the foreach infinity norm is a plain loop without vector instructions: fine for
# small tensors (its per-tensor cost is low), ~20x slower than ``aminmax`` on large ones.
_CPU_SMALL = 4096


def max_abs(tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    r"""Per-tensor ``max |T_i|``, NaN when a tensor holds a NaN, 0 for an empty tensor.

    On accelerators one fused infinity-norm kernel per (device, dtype) group. On CPU
    the small tensors of a group share that kernel and each large one takes one
    ``aminmax`` pass (no temporary ``|T|``; an order of magnitude faster there). Complex
    tensors give their largest magnitude (through a temporary ``|T|``: ``aminmax`` has no
    complex kernel).

    Returns:
        tensor ``[len(tensors)]`` of :func:`result_dtype`.
    """
    return _per_group(tensors, device, lambda members: _with_empties(members, _group_max_abs))


def _group_max_abs(members: list[torch.Tensor]) -> torch.Tensor:
    first = members[0]
    if first.is_complex() or not (_HAS_FOREACH_NORM and first.device.type in _FOREACH_DEVICE_TYPES):
        return torch.stack([m.detach().abs().amax() for m in members])  # amax propagates NaN
    if first.device.type != "cpu":
        return _group_norms(members, math.inf)
    large = [i for i, m in enumerate(members) if m.numel() > _CPU_SMALL]
    if not large:
        return _group_norms(members, math.inf)
    lows, highs = zip(*(torch.aminmax(members[i].detach()) for i in large), strict=True)
    low, high = torch.stack(lows), torch.stack(highs)
    biggest = torch.maximum(low.neg(), high)  # NaN when either is
    if len(large) == len(members):
        return biggest
    out = torch.empty(len(members), dtype=biggest.dtype, device=first.device)
    chosen = set(large)
    small = [i for i in range(len(members)) if i not in chosen]
    out[torch.tensor(small)] = _group_norms([members[i] for i in small], math.inf).to(out.dtype)
    out[torch.tensor(large)] = biggest
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
