r"""Clamp gradients while backpropagation computes them, through removable tensor hooks."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch
from torch.utils.hooks import RemovableHandle

from graddoctor.remedies.clip._gather import as_tensor_list


class BackwardClipHandle:
    """Owns the tensor hooks of ``clip_during_backward``; ``remove()`` or leave a ``with`` block.

    Attributes:
        value: the clamp bound.
        handles: one ``RemovableHandle`` per hooked parameter (empty once removed).
    """

    def __init__(self, value: float, handles: list[RemovableHandle]) -> None:
        self.value = value
        self.handles = handles

    def remove(self) -> None:
        """Remove every hook; calling it again does nothing."""
        while self.handles:
            self.handles.pop().remove()

    def reattach(self, params: torch.Tensor | Iterable[torch.Tensor]) -> BackwardClipHandle:
        """New hooks with the same bound on ``params`` (e.g. a copied model's); this handle is kept."""
        return clip_during_backward(params, self.value)

    def __enter__(self) -> BackwardClipHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __len__(self) -> int:
        return len(self.handles)

    def __repr__(self) -> str:
        return f"BackwardClipHandle(value={self.value}, hooks={len(self.handles)})"


def clip_during_backward(
    params: torch.Tensor | Iterable[torch.Tensor], value: float
) -> BackwardClipHandle:
    r"""Clamp each parameter's gradient to :math:`[-\text{value}, \text{value}]` as it is computed.

    A hook on every parameter that requires grad replaces the gradient autograd hands it
    by :math:`\operatorname{clamp}(g, -\text{value}, \text{value})` before it is
    accumulated into ``.grad``. Unlike ``clip_value_`` after ``backward()``, each backward
    pass's contribution is clamped, so gradients accumulated over several backward passes
    can exceed ``value``. Gradients flowing to earlier layers are not changed: only what is
    stored for the parameters. Mikolov (2012), "Statistical Language Models Based on Neural
    Networks"; the hook recipe of Godoy, "Deep Learning with PyTorch Step-by-Step".

    Args:
        params: the parameters to hook (e.g. ``model.parameters()``); a tensor or an iterable.
        value: the positive bound.

    Returns:
        a ``BackwardClipHandle``: call ``.remove()`` or use it as a context manager.
    """
    if not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"value must be a positive number, got {value!r}")
    bound = float(value)

    def clamp(grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(-bound, bound)

    handles = []
    for param in as_tensor_list(params):
        if param.requires_grad:
            handles.append(param.register_hook(clamp))
    return BackwardClipHandle(bound, handles)
