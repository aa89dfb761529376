"""The ``guard=`` option of the Lightning and Hugging Face callbacks.

A callback's Monitor runs in manual mode (the framework owns the optimizer step), so the
Guard is attached to the framework's optimizer once it exists: Lightning's
``trainer.optimizers[0]`` at ``on_fit_start``, the Trainer's optimizer at
``on_train_begin`` (accelerate's wrapper is followed to the optimizer inside). The
handle joins the Monitor's, so closing the fit's run gives ``optimizer.step`` back.
"""

from __future__ import annotations

from typing import Any

from ..monitor._optimizers import hooked_optimizer


def attach_guard(callback: Any, optimizer: Any) -> None:
    """Protect the fit in progress with ``callback.guard`` (nothing without a guard or a run)."""
    guard, monitor = getattr(callback, "guard", None), callback.monitor
    if guard is None or monitor is None:
        return
    inner = hooked_optimizer(optimizer)
    if inner is None:
        raise ValueError(f"the Guard needs a torch optimizer, got {type(optimizer).__name__}")
    monitor.guard = guard  # the losses the callback logs reach the Guard
    monitor._handles.append(guard.attach(monitor, inner))


__all__ = ["attach_guard"]
