"""Gathering gradients for the clipping functions (grouping lives in ``graddoctor._foreach``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from graddoctor._foreach import TensorGroup as GradGroup
from graddoctor._foreach import group_by_device_and_dtype


def as_tensor_list(
    tensors: torch.Tensor | Iterable[torch.Tensor], what: str = "params"
) -> list[torch.Tensor]:
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


__all__ = ["GradGroup", "as_tensor_list", "grads_of", "group_by_device_and_dtype"]
