"""Gathering gradients and grouping them by (device, dtype) for the ``torch._foreach_*`` kernels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

# devices with fused multi-tensor (foreach) kernels; anything else uses a plain loop
_FOREACH_DEVICE_TYPES = frozenset({"cpu", "cuda", "xpu"})


def as_tensor_list(tensors: torch.Tensor | Iterable[torch.Tensor], what: str = "params") -> list[torch.Tensor]:
    """A list from one tensor or any iterable of tensors (a generator is consumed once)."""
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    try:
        items = list(tensors)
    except TypeError:
        raise TypeError(
            f"{what} must be a tensor or an iterable of tensors (e.g. model.parameters()), "
            f"got {type(tensors).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{what} must contain tensors only, found a {type(item).__name__}")
    return items


def grads_of(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The ``.grad`` of each parameter that has one, in order."""
    return [p.grad for p in params if p.grad is not None]


class GradGroup(NamedTuple):
    """Tensors sharing a device and dtype, their positions in the input, and the kernel choice."""

    device: torch.device
    tensors: list[torch.Tensor]
    indices: list[int]
    foreach: bool


def group_by_device_and_dtype(tensors: list[torch.Tensor], foreach: bool | None = None) -> list[GradGroup]:
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
        key = (tensor.device, tensor.dtype)
        if key not in by_key:
            by_key[key] = ([], [])
        group_tensors, group_indices = by_key[key]
        group_tensors.append(tensor)
        group_indices.append(index)
    return [
        GradGroup(device, group_tensors, group_indices, _use_foreach(group_tensors, device, foreach))
        for (device, _), (group_tensors, group_indices) in by_key.items()
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
