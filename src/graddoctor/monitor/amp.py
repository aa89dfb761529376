"""Mixed precision: seeing the steps ``torch.amp.GradScaler`` skips, and its loss scale.

``scaler.step(optimizer)`` unscales the gradients, and when one of them is inf/NaN it
does not call ``optimizer.step()`` at all: no optimizer hook fires, and a monitor that
follows the optimizer never learns that the step happened. ``ScalerWatch`` wraps
``step`` on the one scaler instance it is given (nothing else is patched; ``remove()``
restores it) and tells its owner, after each call, whether the optimizer stepped.

Optimizers that unscale inside their own step (``_step_supports_amp_scaling``, e.g.
fused Adam) are always called; the scaler hands them ``found_inf`` and ``grad_scale``
as attributes for the duration of the call, which ``amp_attributes`` reads from the
optimizer's step pre-hook: their gradients are still scaled there, and ``unscale_``
divides the statistics declared ``loss_scaled`` (``probes.statistics``) by the scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..probes._stat_block import StatBlock
from ..probes.statistics import LOSS_SCALED_STATS
from ._optimizers import hooked_optimizer


def check_scaler(scaler: Any) -> None:
    """TypeError unless ``scaler`` looks like a ``torch.amp.GradScaler``."""
    needed = ("step", "update", "get_scale", "is_enabled")
    missing = [name for name in needed if not callable(getattr(scaler, name, None))]
    if missing:
        raise TypeError(
            f"scaler must be a torch.amp.GradScaler (or None), got {type(scaler).__name__} "
            f"without {', '.join(missing)}"
        )


def current_scale(scaler: Any) -> torch.Tensor | float | None:
    """The loss scale the current gradients were multiplied by (a tensor copy: no host sync).

    Read before ``scaler.update()``, it is the scale of this step's backward pass.
    """
    scale = getattr(scaler, "_scale", None)
    if isinstance(scale, torch.Tensor):
        return scale.detach().reshape(()).clone()
    if not scaler.is_enabled():
        return None
    return float(scaler.get_scale())


def amp_attributes(
    optimizer: torch.optim.Optimizer,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(found_inf, grad_scale)`` that GradScaler set on a self-unscaling optimizer, else Nones.

    ``grad_scale`` is None when the gradients were already unscaled (``scaler.unscale_``).
    """
    found_inf = getattr(optimizer, "found_inf", None)
    grad_scale = getattr(optimizer, "grad_scale", None)
    return (
        found_inf if isinstance(found_inf, torch.Tensor) else None,
        grad_scale if isinstance(grad_scale, torch.Tensor) else None,
    )


def unscale_(block: StatBlock, grad_scale: torch.Tensor) -> StatBlock:
    """Divide the block's ``loss_scaled`` rows (e.g. ``grad_norm``, ``grad_max``) by the loss scale, in place.

    Args:
        block: statistics measured from still-scaled gradients.
        grad_scale: the scale GradScaler multiplied the loss by (a tensor: no host sync).

    Returns:
        ``block``, its loss-scaled rows unscaled.
    """
    scale = grad_scale.to(block.values.device, torch.float32)
    for name in LOSS_SCALED_STATS:
        if name in block:
            block[name] /= scale
    return block


class ScalerWatch:
    """Wraps ``scaler.step`` of one GradScaler instance; ``remove()`` restores it.

    Whether the optimizer stepped is seen by a step post-hook registered on the optimizer
    for the duration of the call only: it works for any optimizer and whatever the reason
    the scaler had to skip.

    Args:
        scaler: the ``torch.amp.GradScaler``.
        on_step: called as ``on_step(optimizer, stepped, scale)`` after each enabled
            ``scaler.step(optimizer)``; ``scale`` is the loss scale of that step's
            backward (``current_scale``).
    """

    def __init__(self, scaler: Any, on_step: Callable[[Any, bool, Any], None]) -> None:
        check_scaler(scaler)
        self.scaler = scaler
        original = scaler.step
        self._active = True

        def step(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            if not (self._active and scaler.is_enabled()):
                return original(optimizer, *args, **kwargs)
            scale = current_scale(scaler)
            stepped: list[bool] = []
            handle = optimizer.register_step_post_hook(lambda *_: stepped.append(True))
            try:
                result = original(optimizer, *args, **kwargs)
            finally:
                handle.remove()
            on_step(optimizer, bool(stepped), scale)
            return result

        self._wrapped = step
        scaler.step = step  # instance attribute: shadows the class's method until removed

    def remove(self) -> None:
        """Restore the scaler's own ``step`` (or pass calls straight through if re-wrapped since)."""
        self._active = False
        if self.scaler.__dict__.get("step") is self._wrapped:
            del self.scaler.__dict__["step"]


def scaler_stepped(monitor: Any, optimizer: Any, stepped: bool, scale: Any) -> None:
    """What a Monitor records after ``scaler.step(optimizer)``: the loss scale, and the step
    the scaler skipped (no optimizer hook fired: its gradients are recorded as they are,
    unscaled and inf/NaN, and its update as 0).

    Args:
        monitor: the Monitor (its pending scalars, its probes and its step).
        optimizer: the optimizer the scaler stepped (a Monitor of another ignores it).
        stepped: whether the optimizer's step ran.
        scale: the loss scale of the step's backward.
    """
    if monitor.optimizer is None:  # manual mode: the framework closes the step with after_step()
        monitor._pending.amp_scalars(monitor.step_index, scale, 0.0 if stepped else 1.0)
    elif hooked_optimizer(optimizer) is not monitor.optimizer:
        return
    elif stepped:
        found_inf, monitor._found_inf = monitor._found_inf, None
        skipped = 0.0 if found_inf is None else (found_inf > 0).float()
        monitor._pending.amp_scalars(monitor.step_index - 1, scale, skipped)
    else:
        step = monitor.step_index
        monitor.probes.before_update(step, snapshot=False)
        monitor._finish_step(skipped=True)
        monitor._pending.amp_scalars(step, scale, 1.0)


__all__ = [
    "ScalerWatch",
    "amp_attributes",
    "check_scaler",
    "current_scale",
    "scaler_stepped",
    "unscale_",
]
