"""Walking the tensors inside a module's (nested) inputs or outputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside ``obj``, looking into tuples, lists and dict values."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def first_float_tensor(value: Any) -> torch.Tensor | None:
    """The first floating-point tensor inside a (nested) output, else None."""
    return next((t for t in iter_tensors(value) if t.is_floating_point()), None)


__all__ = ["first_float_tensor", "iter_tensors"]
