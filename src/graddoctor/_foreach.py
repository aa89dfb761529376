"""The one (device, dtype) grouper and the fused per-tensor reductions built on it.

``group_by_device_and_dtype`` splits tensors for the ``torch._foreach_*`` kernels (the
probes' norms and the clipping remedies both use it). Every reduction returns a 1-D
float32 tensor on the first tensor's device, one entry per input tensor, without any host
synchronisation.
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
    (fp16, bf16) are accumulated in float32.

    Args:
        tensors: the tensors (dense or sparse).
        ord: the norm order (2, 1, inf...).
        device: where the result lives (default: the first tensor's device).

    Returns:
        float32 tensor ``[len(tensors)]``.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float32, device=device)
    device = tensors[0].device if device is None else device
    dense = [_dense(t) for t in tensors]
    groups = group_by_device_and_dtype(dense)
    out = None if len(groups) == 1 else torch.empty(len(dense), dtype=torch.float32, device=device)
    for group in groups:
        values = _same_kind_norms(group.tensors, ord)
        stacked = torch.stack([v.to(torch.float32) for v in values]).to(device)
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
        return tensor.detach().abs().max().to(torch.float32)
    if tensor.dtype in LOW_PRECISION:
        return torch.linalg.vector_norm(tensor.detach(), ord, dtype=torch.float32)
    return torch.linalg.vector_norm(tensor.detach(), ord)


def max_abs(tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    r"""Per-tensor ``max |T_i|`` from one ``aminmax`` pass each (no temporary ``|T|``).

    NaN anywhere in a tensor gives NaN. Empty tensors give 0. On CPU this is an order of
    magnitude faster than ``torch._foreach_norm(tensors, inf)``.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float32, device=device)
    device = tensors[0].device if device is None else device
    values = []
    for tensor in tensors:
        dense = _dense(tensor).detach()
        if dense.numel() == 0:
            values.append(torch.zeros((), dtype=torch.float32, device=dense.device))
            continue
        low, high = torch.aminmax(dense)
        biggest = torch.maximum(low.neg(), high).to(torch.float32)
        values.append(
            torch.where(torch.isnan(low) | torch.isnan(high), low.to(torch.float32), biggest)
        )
    return torch.stack([v.to(device) for v in values])


def nonfinite_counts(
    tensors: Sequence[torch.Tensor], device: torch.device | None = None
) -> torch.Tensor:
    """Per-tensor count of NaN and +-Inf entries, float32 ``[len(tensors)]``."""
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
