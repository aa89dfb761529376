"""What a Monitor watches: the plain model, the optimizer it hooks, its parameter columns, its modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..probes._wrappers import unwrap_model
from ..probes.activations import select_modules
from ..probes.parameters import trainable_parameters
from ._compiled import compiled_reason
from ._optimizers import hooked_optimizer, optimizer_parameters


@dataclass
class Watched:
    """The resolved targets of a Monitor.

    ``model`` is the plain model inside DDP / ``torch.compile`` wrappers; ``names`` and
    ``params`` the recorded parameter columns (the optimizer's, in model order);
    ``frozen`` the parameters that do not train and ``unmonitored`` the trainable ones
    the optimizer does not update; ``activations_skipped`` why no module hook is
    installed (a compiled model), else None.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    names: list[str]
    params: list[nn.Parameter]
    frozen: list[str]
    unmonitored: list[str]
    modules: list[tuple[str, nn.Module]]
    activations_skipped: str | None


def resolve(model: nn.Module, optimizer: Any, modules: Any, activations_every: Any) -> Watched:
    """The targets of ``Monitor(model, optimizer, modules=..., activations_every=...)``.

    Raises:
        TypeError: ``model`` is not a module or ``optimizer`` not an optimizer (or a wrapper of one).
        ValueError: no trainable parameter, or none that the optimizer updates.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Monitor needs a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None:
        hooked = hooked_optimizer(optimizer)
        if hooked is None:
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        optimizer = hooked
    inner = unwrap_model(model)
    names, params, frozen = trainable_parameters(inner)
    if not params:
        raise ValueError(
            f"{type(inner).__name__} has no trainable parameters (none with requires_grad): "
            "there are no gradients to monitor"
        )
    names, params, unmonitored = optimizer_parameters(names, params, optimizer)
    chosen = select_modules(inner, modules)
    skipped = compiled_reason(model) if activations_every and chosen else None
    return Watched(inner, optimizer, names, params, frozen, unmonitored, chosen, skipped)


__all__ = ["Watched", "resolve"]
