"""Fused per-tensor reductions: ``torch._foreach_norm`` per (device, dtype) group.

Every function returns a 1-D float32 tensor on the first tensor's device, one entry
per input tensor, without any host synchronisation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch

_HAS_FOREACH_NORM = hasattr(torch, "_foreach_norm")
# half-precision tensors are reduced in float32: an fp16 sum of squares overflows at a
# norm of 65504 and a bf16 result keeps 3 significant digits
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """The stored values of a tensor (sparse gradients reduce over their values)."""
    if tensor.is_sparse:
        return tensor.coalesce().values()
    if tensor.layout != torch.strided:
        return tensor.to_dense()
    return tensor


def group_by_device_dtype(tensors: Sequence[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), in input order."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, tensor in enumerate(tensors):
        groups[(tensor.device, tensor.dtype)].append(i)
    return groups


def norms(tensors: Sequence[torch.Tensor], ord: float = 2.0, device: torch.device | None = None) -> torch.Tensor:
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
    groups = group_by_device_dtype(dense)
    out = None if len(groups) == 1 else torch.empty(len(dense), dtype=torch.float32, device=device)
    for idx in groups.values():
        values = _same_kind_norms([dense[i] for i in idx], ord)
        stacked = torch.stack([v.to(torch.float32) for v in values]).to(device)
        if out is None:
            return stacked
        out[torch.tensor(idx, device=device)] = stacked
    return out


def _same_kind_norms(members: list[torch.Tensor], ord: float) -> list[torch.Tensor]:
    # one fused kernel over the non-empty tensors of one (device, dtype) group; empty
    # tensors (e.g. a parameter held by another rank's FSDP shard) give 0
    filled = [i for i, m in enumerate(members) if m.numel() > 0]
    values = [torch.zeros((), dtype=torch.float32, device=m.device) for m in members]
    if _HAS_FOREACH_NORM and filled:
        chosen = [members[i] for i in filled]
        try:
            if chosen[0].dtype in _LOW_PRECISION:
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
    if tensor.dtype in _LOW_PRECISION:
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
        values.append(torch.where(torch.isnan(low) | torch.isnan(high), low.to(torch.float32), biggest))
    return torch.stack([v.to(device) for v in values])


def nonfinite_counts(tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    """Per-tensor count of NaN and +-Inf entries, float32 ``[len(tensors)]``."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float32, device=device)
    device = tensors[0].device if device is None else device
    counts = [torch.isfinite(_dense(t)).logical_not().sum() for t in tensors]
    return torch.stack([c.to(device=device, dtype=torch.float32) for c in counts])


def differences_norms(
    after: Sequence[torch.Tensor], before: Sequence[torch.Tensor], device: torch.device | None = None
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
