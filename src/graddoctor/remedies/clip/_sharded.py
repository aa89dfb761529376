r"""Clipping sharded gradients (FSDP) by their global norm, equal to the single-process result.

DTensor gradients (FSDP2 ``fully_shard``) are detected; FSDP1 shards
(``use_orig_params=True``) need ``process_group=``. Each rank reduces its local shards to
per-tensor :math:`\sum |g|^p` (max for :math:`p = \infty`), divided by the number of
ranks holding a replica, one all-reduce combines them over the group, and each rank
scales its own shards; no gradient is gathered.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from graddoctor._foreach import group_by_device_and_dtype
from graddoctor.remedies.clip._norms import clip_coefficient, group_norms, raise_nonfinite

# (process group, per-tensor replica count)
Sharding = tuple[object, list[float]]


def is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a DTensor (duck-typed: no import of torch.distributed.tensor)."""
    return hasattr(tensor, "placements") and hasattr(tensor, "device_mesh")


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if is_dtensor(tensor) else tensor


def sharding(
    grads: list[torch.Tensor | None], process_group, params: list[torch.Tensor] = ()
) -> Sharding | None:
    """``(group, replicas per tensor)`` when ``grads`` are shards, else None (local gradients).

    Args:
        grads: the gradients, ``None`` for a parameter without one.
        process_group: the group the shards live on (FSDP1), or None to detect DTensors.
        params: the parameters the gradients belong to, to recognise FSDP1 shards.
    """
    present = [g for g in grads if g is not None]
    if process_group is not None:
        return process_group, [1.0] * len(grads)
    if (
        any(getattr(p, "_fsdp_flattened", False) for p in params)
        and dist.is_available()
        and dist.is_initialized()
    ):
        raise ValueError(
            "these gradients are FSDP1 shards (FullyShardedDataParallel with use_orig_params=True): "
            "pass process_group= (dist.group.WORLD for the default FULL_SHARD) so the norm is the "
            "global one, or call the FSDP model's own clip_grad_norm_()"
        )
    sharded = [g for g in present if is_dtensor(g)]
    if not sharded:
        return None
    if len(sharded) != len(present):
        raise ValueError(
            "the gradients mix DTensors (FSDP2) and plain tensors: clip the two sets separately"
        )
    mesh = sharded[0].device_mesh
    if any(g.device_mesh != mesh for g in sharded):
        raise ValueError(
            "the DTensor gradients live on different device meshes: clip each mesh's set separately"
        )
    if mesh.ndim == 1:
        group = mesh.get_group()
    elif mesh.size() == dist.get_world_size():
        group = dist.group.WORLD
    else:
        raise ValueError(
            f"a {mesh.ndim}-D device mesh of {mesh.size()} ranks is not the whole world: pass process_group="
        )
    copies = []
    for grad in grads:
        count = 1
        for dim, placement in enumerate(getattr(grad, "placements", ())):
            if placement.is_partial():
                raise ValueError(
                    "a DTensor gradient has a Partial placement: reduce it before clipping"
                )
            if placement.is_replicate():
                count *= mesh.size(dim)
        copies.append(float(count))
    return group, copies


def global_powers(
    grads: list[torch.Tensor | None], norm_type: float, found: Sharding
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per tensor: the global :math:`\sum |g|^p` (max |g| for p = inf; 0 without a gradient),
    and whether any rank has it. One all-reduce over the group; every rank must call."""
    group, copies = found
    locals_ = [_local(g) if g is not None else None for g in grads]
    present = [t for t in locals_ if t is not None]
    device = present[0].device if present else torch.device("cpu")
    if dist.get_backend(group) == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    powers = torch.zeros(len(grads), dtype=torch.float32, device=device)
    filled = [i for i, t in enumerate(locals_) if t is not None and t.numel() > 0]
    if filled:
        groups = group_by_device_and_dtype([locals_[i] for i in filled])
        norms = group_norms(groups, norm_type)
        where = [filled[i] for group_ in groups for i in group_.indices]
        powers[torch.tensor(where, device=device)] = torch.stack(
            [n.to(device, torch.float32) for g in norms for n in g]
        )
    if math.isinf(norm_type):  # MAX drops NaN: keep it visible as inf
        powers = torch.nan_to_num(powers, nan=math.inf)
    else:
        powers = powers.pow(norm_type) / torch.tensor(copies, dtype=torch.float32, device=device)
    has = torch.tensor([t is not None for t in locals_], dtype=torch.float32, device=device)
    both = torch.stack([powers, has])
    dist.all_reduce(
        both, op=dist.ReduceOp.MAX if math.isinf(norm_type) else dist.ReduceOp.SUM, group=group
    )
    return both[0], both[1] > 0


def from_powers(powers: torch.Tensor, norm_type: float, total: bool) -> torch.Tensor:
    """The total norm (``total``) or the per-tensor norms from :func:`global_powers`."""
    if math.isinf(norm_type):
        return powers.max() if total else powers
    return (powers.sum() if total else powers).pow(1.0 / norm_type)


def clip_sharded_(
    params, max_norm, norm_type, nonfinite, per_layer, eps, found: Sharding
) -> torch.Tensor:
    """``clip_grad_norm_`` for sharded gradients (see the module docstring)."""
    if nonfinite == "zero":
        for p in params:
            if p.grad is not None:
                torch.nan_to_num_(_local(p.grad), nan=0.0, posinf=0.0, neginf=0.0)
    powers, anywhere = global_powers([p.grad for p in params], norm_type, found)
    per_param = from_powers(powers, norm_type, total=False)
    has_grad = [i for i, p in enumerate(params) if p.grad is not None]
    norm = per_param[anywhere] if per_layer else from_powers(powers, norm_type, total=True)
    if nonfinite in ("raise", "skip") and not bool(
        torch.isfinite(norm).all()
    ):  # same on every rank
        if nonfinite == "raise":
            raise_nonfinite(norm_type, per_layer)
        for param in params:
            param.grad = None
        return norm
    coefficients = clip_coefficient(max_norm, per_param if per_layer else norm, eps)
    for i in has_grad:
        coefficient = coefficients[i] if per_layer else coefficients
        _local(params[i].grad).mul_(coefficient.to(params[i].grad.device))
    return norm
