"""Gathering gradients and checking arguments for the clipping functions.

Grouping by (device, dtype) lives in :mod:`graddoctor._foreach`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import nn

Tensors = torch.Tensor | Iterable[torch.Tensor]


def as_tensor_list(tensors: Tensors, what: str = "params") -> list[torch.Tensor]:
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


def is_parameter(tensor: torch.Tensor) -> bool:
    """A leaf that requires grad (or already holds one): its ``.grad`` is what is clipped.

    Any other tensor (e.g. from ``torch.autograd.grad``) is taken to be a gradient itself.
    """
    return isinstance(tensor, nn.Parameter) or (
        tensor.is_leaf and (tensor.requires_grad or tensor.grad is not None)
    )


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a number > 0."""
    if not isinstance(value, numbers.Real) or math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_norm_type(norm_type: float | str) -> float:
    """``norm_type`` as a float, as torch reads it (``float(norm_type)``: ``2``, ``"inf"``...).

    Raises:
        ValueError: unless it is a number > 0 or infinity. torch also takes ``p <= 0``,
            which is not a norm (``p = 0`` counts the nonzero entries, ``p < 0`` is 0 as
            soon as one entry is 0), so clipping by it would silently do nothing useful.
    """
    try:
        value = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(
            f"norm_type must be a positive number or 'inf', got {norm_type!r}"
        ) from None
    if math.isnan(value) or value <= 0:
        raise ValueError(
            f"norm_type must be a positive number or 'inf', got {norm_type!r}: a p <= 0 is not "
            "a norm (p = 0 counts nonzero entries, p < 0 is 0 once any entry is 0)"
        )
    return value


def check_eps(eps: float) -> float:
    """``eps`` as a float, or ``ValueError`` unless it is a number >= 0."""
    if not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    return float(eps)
