r"""Gradient clipping by value and by norm (re-exported by ``graddoctor.clip``).

Measuring is split from acting: ``total_norm`` measures, ``clip_grads_with_norm_`` scales,
``clip_norm_`` does both. Gradients are grouped by (device, dtype) and handled by the
``torch._foreach_*`` kernels where available, by a plain loop elsewhere. The default
finite path never reads a tensor on the host: the clip coefficient is clamped with
``torch.clamp`` instead of ``if norm > max_norm``.

Sharded gradients (FSDP) are clipped by their global norm, equal to the single-process
result: DTensor gradients (FSDP2 ``fully_shard``) are detected; FSDP1 shards
(``use_orig_params=True``) need ``process_group=``. Each rank reduces its local shards to
per-tensor :math:`\sum |g|^p` (max for :math:`p = \infty`), one all-reduce combines them
over the group, and each rank scales its own shards; no gradient is gathered.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from graddoctor.remedies._clip_foreach import (
    GradGroup,
    as_tensor_list,
    grads_of,
    group_by_device_and_dtype,
)

NONFINITE_POLICIES = ("raise", "skip", "zero", "propagate")
DEFAULT_EPS = 1e-6

Tensors = torch.Tensor | Iterable[torch.Tensor]


def _check_positive(name: str, value: float) -> float:
    if not isinstance(value, numbers.Real) or math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_norm_type(norm_type: float) -> float:
    if not isinstance(norm_type, numbers.Real) or math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"norm_type must be a positive number or float('inf'), got {norm_type!r}")
    return float(norm_type)


def _is_parameter(tensor: torch.Tensor) -> bool:
    # a leaf that requires grad (or already holds one) is a parameter whose .grad is read;
    # any other tensor (e.g. from torch.autograd.grad) is taken to be a gradient itself
    return isinstance(tensor, nn.Parameter) or (
        tensor.is_leaf and (tensor.requires_grad or tensor.grad is not None)
    )


def _group_norms(groups: list[GradGroup], norm_type: float) -> list[list[torch.Tensor]]:
    # one 0-dim norm per tensor, group by group
    return [
        list(torch._foreach_norm(group.tensors, norm_type))
        if group.foreach
        else [torch.linalg.vector_norm(t, norm_type) for t in group.tensors]
        for group in groups
    ]


def _combine(norms: list[list[torch.Tensor]], device: torch.device, norm_type: float) -> torch.Tensor:
    # the norm of the per-tensor norms, stacked in group order as torch does
    return torch.linalg.vector_norm(torch.stack([n.to(device) for group in norms for n in group]), norm_type)


def _scale_(groups: list[GradGroup], coefficient: torch.Tensor) -> None:
    for group in groups:
        coefficient_on_device = coefficient.to(group.device)
        if group.foreach:
            torch._foreach_mul_(group.tensors, coefficient_on_device)
        else:
            for grad in group.tensors:
                grad.mul_(coefficient_on_device)


def _scale_each_(groups: list[GradGroup], norms: list[list[torch.Tensor]], max_norm: float, eps: float) -> None:
    for group, group_norms in zip(groups, norms):
        coefficients = torch.clamp(max_norm / (torch.stack(group_norms) + eps), max=1.0).unbind()
        if group.foreach:
            torch._foreach_mul_(group.tensors, list(coefficients))
        else:
            for grad, coefficient in zip(group.tensors, coefficients):
                grad.mul_(coefficient)


def _is_dtensor(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "placements") and hasattr(tensor, "device_mesh")


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def _sharding(params: list[torch.Tensor], process_group) -> tuple | None:
    """``(group, copies per param)`` when the gradients are shards, else None (local gradients)."""
    grads = [p.grad for p in params if p.grad is not None]
    if process_group is not None:
        return process_group, [1.0] * len(params)
    if any(getattr(p, "_fsdp_flattened", False) for p in params) and dist.is_available() and dist.is_initialized():
        raise ValueError(
            "these gradients are FSDP1 shards (FullyShardedDataParallel with use_orig_params=True): "
            "pass process_group= (dist.group.WORLD for the default FULL_SHARD) so the norm is the "
            "global one, or call the FSDP model's own clip_grad_norm_()"
        )
    sharded = [g for g in grads if _is_dtensor(g)]
    if not sharded:
        return None
    if len(sharded) != len(grads):
        raise ValueError("the gradients mix DTensors (FSDP2) and plain tensors: clip the two sets separately")
    mesh = sharded[0].device_mesh
    if any(g.device_mesh != mesh for g in sharded):
        raise ValueError("the DTensor gradients live on different device meshes: clip each mesh's set separately")
    if mesh.ndim == 1:
        group = mesh.get_group()
    elif mesh.size() == dist.get_world_size():
        group = dist.group.WORLD
    else:
        raise ValueError(f"a {mesh.ndim}-D device mesh of {mesh.size()} ranks is not the whole world: pass process_group=")
    copies = []
    for p in params:
        count = 1
        for dim, placement in enumerate(getattr(p.grad, "placements", ())):
            if placement.is_partial():
                raise ValueError("a DTensor gradient has a Partial placement: reduce it before clipping")
            if placement.is_replicate():
                count *= mesh.size(dim)
        copies.append(float(count))
    return group, copies


def _global_powers(params: list[torch.Tensor], norm_type: float, sharding: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per parameter: the global :math:`\sum |g|^p` (max |g| for p = inf; 0 without a gradient),
    and whether any rank has its gradient. One all-reduce over the group."""
    group, copies = sharding
    locals_ = [_local(p.grad) if p.grad is not None else None for p in params]
    present = [t for t in locals_ if t is not None]
    device = present[0].device if present else torch.device("cpu")
    if dist.get_backend(group) == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    powers = torch.zeros(len(params), dtype=torch.float32, device=device)
    filled = [i for i, t in enumerate(locals_) if t is not None and t.numel() > 0]
    if filled:
        groups = group_by_device_and_dtype([locals_[i] for i in filled])
        norms = _group_norms(groups, norm_type)
        where = [filled[i] for group_ in groups for i in group_.indices]
        powers[torch.tensor(where, device=device)] = torch.stack([n.to(device, torch.float32) for g in norms for n in g])
    if math.isinf(norm_type):  # MAX drops NaN: keep it visible as inf
        powers = torch.nan_to_num(powers, nan=math.inf)
    else:
        powers = powers.pow(norm_type) / torch.tensor(copies, dtype=torch.float32, device=device)
    has = torch.tensor([t is not None for t in locals_], dtype=torch.float32, device=device)
    both = torch.stack([powers, has])
    dist.all_reduce(both, op=dist.ReduceOp.MAX if math.isinf(norm_type) else dist.ReduceOp.SUM, group=group)
    return both[0], both[1] > 0


def _from_powers(powers: torch.Tensor, norm_type: float, total: bool) -> torch.Tensor:
    if math.isinf(norm_type):
        return powers.max() if total else powers
    return (powers.sum() if total else powers).pow(1.0 / norm_type)


def _clip_sharded_(params, max_norm, norm_type, nonfinite, per_layer, eps, sharding) -> torch.Tensor:
    """``clip_norm_`` for sharded gradients (see the module docstring)."""
    if nonfinite == "zero":
        for p in params:
            if p.grad is not None:
                torch.nan_to_num_(_local(p.grad), nan=0.0, posinf=0.0, neginf=0.0)
    powers, anywhere = _global_powers(params, norm_type, sharding)
    per_param = _from_powers(powers, norm_type, total=False)
    has_grad = [i for i, p in enumerate(params) if p.grad is not None]
    norm = per_param[anywhere] if per_layer else _from_powers(powers, norm_type, total=True)
    if nonfinite in ("raise", "skip") and not bool(torch.isfinite(norm).all()):  # same on every rank
        if nonfinite == "raise":
            _raise_nonfinite(norm_type, per_layer)
        for param in params:
            param.grad = None
        return norm
    if per_layer:
        coefficients = torch.clamp(max_norm / (per_param + eps), max=1.0)
        for i in has_grad:
            _local(params[i].grad).mul_(coefficients[i].to(params[i].grad.device))
    else:
        coefficient = torch.clamp(max_norm / (norm + eps), max=1.0)
        for i in has_grad:
            _local(params[i].grad).mul_(coefficient.to(params[i].grad.device))
    return norm


@torch.no_grad()
def total_norm(
    params_or_grads: Tensors, norm_type: float = 2.0, foreach: bool | None = None, process_group=None
) -> torch.Tensor:
    r"""The norm of all gradients seen as one vector (the measuring twin of ``clip_norm_``).

    .. math::
        \|g\|_p = \Big(\sum_i \|g_i\|_p^p\Big)^{1/p}, \qquad
        \|g\|_\infty = \max_i \|g_i\|_\infty

    Args:
        params_or_grads: parameters (their ``.grad`` is used; those without one are
            skipped) and/or gradient tensors; a tensor or any iterable, generators included.
        norm_type: :math:`p`, a positive number or ``float("inf")``.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
        process_group: the gradients are shards over this group (FSDP1); DTensor
            gradients (FSDP2) are detected without it. A collective: every rank calls.

    Returns:
        a 0-dim tensor on the first gradient's device (``tensor(0.)`` without gradients);
        for shards the global norm, the same on every rank.
    """
    norm_type = _check_norm_type(norm_type)
    tensors = as_tensor_list(params_or_grads, "params_or_grads")
    if all(_is_parameter(t) for t in tensors):
        sharding = _sharding(tensors, process_group)
        if sharding is not None:
            return _from_powers(_global_powers(tensors, norm_type, sharding)[0], norm_type, total=True)
    elif process_group is not None or any(_is_dtensor(t) for t in tensors):
        raise ValueError("for sharded gradients pass the parameters (not gradient tensors) to total_norm")
    grads = [t.grad if _is_parameter(t) else t for t in tensors]
    grads = [g for g in grads if g is not None]
    if not grads:
        return torch.tensor(0.0)
    groups = group_by_device_and_dtype(grads, foreach)
    return _combine(_group_norms(groups, norm_type), grads[0].device, norm_type)


@torch.no_grad()
def clip_grads_with_norm_(
    params: Tensors, max_norm: float, norm: torch.Tensor, eps: float = DEFAULT_EPS, foreach: bool | None = None
) -> None:
    r"""Scale the gradients by :math:`\min(\text{max\_norm} / (\text{norm} + \epsilon), 1)` in place.

    The acting twin of ``total_norm``: ``norm`` is measured beforehand (or comes from
    elsewhere, e.g. an all-reduce). The coefficient is clamped on the device, no sync.

    Args:
        params: parameters whose ``.grad`` is scaled; a tensor or any iterable.
        max_norm: the largest norm allowed.
        norm: the (0-dim) norm the gradients currently have.
        eps: added to the norm to avoid dividing by zero.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
    """
    max_norm = _check_positive("max_norm", max_norm)
    grads = grads_of(as_tensor_list(params))
    if grads:
        _scale_(group_by_device_and_dtype(grads, foreach), torch.clamp(max_norm / (norm + eps), max=1.0))


def _raise_nonfinite(norm_type: float, per_layer: bool) -> None:
    which = "a per-tensor gradient norm" if per_layer else "the total gradient norm"
    raise RuntimeError(
        f"{which} of order {norm_type} is non-finite (nan or inf), so it cannot be clipped; "
        "find where it comes from (graddoctor's non-finite probe), or pass nonfinite='skip' "
        "to skip this step, 'zero' to zero the non-finite entries, or 'propagate' to scale anyway"
    )


@torch.no_grad()
def clip_norm_(
    params: Tensors,
    max_norm: float,
    norm_type: float = 2.0,
    nonfinite: str = "raise",
    per_layer: bool = False,
    eps: float = DEFAULT_EPS,
    foreach: bool | None = None,
    process_group=None,
) -> torch.Tensor:
    r"""Rescale the gradients so that their norm is at most ``max_norm``; return the norm.

    .. math::
        g \leftarrow g \cdot \min\Big(\frac{\text{max\_norm}}{\|g\|_p + \epsilon}, 1\Big)

    Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
    networks". With ``per_layer=True`` each gradient tensor is clipped to its own norm.
    Identical to ``torch.nn.utils.clip_grad_norm_`` for finite gradients.

    ``nonfinite`` decides what happens when a norm is nan or inf:

    - ``"raise"`` (default): ``RuntimeError`` before any gradient changes. Checking costs
      one host-device synchronisation per call (free on CPU).
    - ``"skip"``: every gradient is set to ``None``, so the next ``optimizer.step()``
      leaves all parameters alone (no momentum or weight-decay move either, unlike zeroed
      gradients); the non-finite norm is returned. One synchronisation per call.
    - ``"zero"``: nan and :math:`\pm\infty` entries are replaced by 0, then the cleaned
      gradients are clipped and their norm returned. No synchronisation.
    - ``"propagate"``: no check, as ``torch.nn.utils.clip_grad_norm_``: non-finite norms
      turn the gradients into nan/0. No synchronisation: the fast path for GPU loops.

    Args:
        params: parameters whose ``.grad`` is clipped (those without one are skipped);
            a tensor or any iterable, generators included.
        max_norm: the largest norm allowed.
        norm_type: :math:`p`, a positive number or ``float("inf")``.
        nonfinite: ``"raise"``, ``"skip"``, ``"zero"`` or ``"propagate"``.
        per_layer: clip each tensor to its own norm instead of the total norm.
        eps: :math:`\epsilon`, added to the norm to avoid dividing by zero.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
        process_group: the gradients are shards over this group (FSDP1 with
            ``use_orig_params=True``: its process group, ``dist.group.WORLD`` by default);
            DTensor gradients (FSDP2) are detected without it. The norm is then the
            global one (one all-reduce; every rank must call) and equals the
            single-process result.

    Returns:
        the total norm before clipping (0-dim), or with ``per_layer`` the vector of
        per-tensor norms in parameter order; ``tensor(0.)`` when no parameter has a gradient.
        Under sharding a plain tensor, global, the same on every rank.
    """
    max_norm = _check_positive("max_norm", max_norm)
    norm_type = _check_norm_type(norm_type)
    if not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    params = as_tensor_list(params)
    sharding = _sharding(params, process_group)
    if sharding is not None:  # a collective: before any early return
        return _clip_sharded_(params, max_norm, norm_type, nonfinite, per_layer, eps, sharding)
    grads = grads_of(params)
    if not grads:
        return torch.zeros(0) if per_layer else torch.tensor(0.0)
    if nonfinite == "zero":
        for grad in grads:
            torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0)
    groups = group_by_device_and_dtype(grads, foreach)
    norms = _group_norms(groups, norm_type)
    first_device = grads[0].device
    if per_layer:
        by_index = {i: n for group, group_norms in zip(groups, norms) for i, n in zip(group.indices, group_norms)}
        norm = torch.stack([by_index[i].to(first_device) for i in range(len(grads))])
    else:
        norm = _combine(norms, first_device, norm_type)
    if nonfinite in ("raise", "skip") and not bool(torch.isfinite(norm).all()):  # host sync
        if nonfinite == "raise":
            _raise_nonfinite(norm_type, per_layer)
        for param in params:
            param.grad = None
        return norm
    if per_layer:
        _scale_each_(groups, norms, max_norm, eps)
    else:
        _scale_(groups, torch.clamp(max_norm / (norm + eps), max=1.0))
    return norm


@torch.no_grad()
def clip_value_(params: Tensors, value: float, foreach: bool | None = None) -> None:
    r"""Clamp every gradient entry to :math:`[-\text{value}, \text{value}]` in place.

    .. math::
        g_j \leftarrow \max(-\text{value}, \min(g_j, \text{value}))

    Mikolov (2012), "Statistical Language Models Based on Neural Networks" (the
    element-wise clipping Pascanu et al. 2013 compare against). Changes the gradient's
    direction; ``clip_norm_`` keeps it. Identical to ``torch.nn.utils.clip_grad_value_``.

    Args:
        params: parameters whose ``.grad`` is clamped (those without one are skipped);
            a tensor or any iterable, generators included.
        value: the positive bound.
        foreach: ``None`` uses the foreach kernels where supported; ``True`` insists.
    """
    value = _check_positive("value", value)
    grads = grads_of(as_tensor_list(params))
    for group in group_by_device_and_dtype(grads, foreach):
        if group.foreach:
            torch._foreach_clamp_min_(group.tensors, -value)
            torch._foreach_clamp_max_(group.tensors, value)
        else:
            for grad in group.tensors:
                grad.clamp_(min=-value, max=value)
